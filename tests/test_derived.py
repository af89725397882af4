"""Tensors derived from frozen weights are computed once and follow every weight change."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from idinvert.core.models.derived import CACHE_ATTRIBUTE, derived
from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.layers import DenseBlock, upsample_conv_kernel


def _counting(block: DenseBlock) -> list[int]:
    calls = [0]

    def compute() -> torch.Tensor:
        calls[0] += 1
        return block.fc.weight * 2.0

    block.compute = compute  # type: ignore[attr-defined]
    return calls


def test_stored_while_frozen_and_recomputed_after_any_change():
    block = DenseBlock(4, 3).requires_grad_(False)
    calls = _counting(block)

    def get() -> torch.Tensor:
        return derived(block, "w2", block.compute, [block.fc.weight])

    first = get()
    assert get() is first and calls == [1]
    block.fc.weight.add_(1.0)  # in place (an optimiser step, copy_, load_state_dict)
    assert torch.equal(get(), block.fc.weight * 2.0) and calls == [2]
    block.load_state_dict(block.state_dict())
    get()
    assert calls == [3]
    block.to(torch.float64)  # module.to swaps .data: same Parameter, new storage and dtype
    assert get().dtype == torch.float64 and calls == [4]


def test_not_stored_while_a_source_is_trained():
    block = DenseBlock(4, 3)  # requires_grad: training
    calls = _counting(block)
    for _ in range(2):
        out = derived(block, "w2", block.compute, [block.fc.weight])
        assert out.requires_grad
    assert calls == [2]
    block(torch.randn(2, 4)).sum().backward()
    assert block.fc.weight.grad is not None and block.wscale.bias.grad is not None


def test_upsample_conv_kernel_equals_nearest_upsampling_then_conv():
    torch.manual_seed(0)
    w = torch.randn(7, 5, 3, 3)  # [C_out, C_in, 3, 3]
    x = torch.randn(2, 5, 6, 6)
    reference = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w * 0.3, padding=1)
    fused = F.conv_transpose2d(x, upsample_conv_kernel(w, 0.3), stride=2, padding=1)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


def test_stored_up_convolution_kernels_are_dense():
    """A permuted (strided) kernel is copied by every conv_transpose2d call, forward and
    backward: the stored kernel must be contiguous so that the copy happens once."""
    cfg = GeneratorConfig(resolution=16, z_dim=8, w_dim=8, fmaps_base=64, fmaps_max=16)
    for fused_scale in (False, True):
        g = Generator(replace(cfg, fused_scale=fused_scale)).requires_grad_(False)
        with torch.no_grad():
            g.synthesis(torch.randn(1, cfg.num_layers, cfg.w_dim))
        kernels = [
            m.__dict__[CACHE_ATTRIBUTE]["kernel"][2]  # (refs, stamp, value)
            for m in g.synthesis.modules()
            if getattr(m, "upsample", False)
        ]
        assert len(kernels) == 2  # 4 → 8 → 16
        for k in kernels:
            assert k.shape[-2:] == (4, 4) and k.is_contiguous()


def test_frozen_generator_matches_itself_in_training_mode_and_after_a_weight_change():
    torch.manual_seed(0)
    cfg = GeneratorConfig(resolution=16, z_dim=8, w_dim=8, fmaps_base=64, fmaps_max=16)
    g = Generator(cfg)
    wp = torch.randn(2, cfg.num_layers, cfg.w_dim)
    trained = g.synthesis(wp)  # weights require grad: computed inside the graph
    frozen = copy.deepcopy(g).requires_grad_(False)
    with torch.no_grad():
        torch.testing.assert_close(frozen.synthesis(wp), trained.detach())
        frozen.synthesis(wp)  # stored now
        frozen.synthesis.layer3.conv.weight.mul_(0.5)
        g.synthesis.layer3.conv.weight.mul_(0.5)
        torch.testing.assert_close(frozen.synthesis(wp), g.synthesis(wp))


@pytest.mark.parametrize("channels_base", [4, 8])
def test_encoder_folds_batchnorm_in_eval_mode_only(channels_base):
    torch.manual_seed(0)
    e = Encoder(EncoderConfig(resolution=16, w_dim=4, channels_base=channels_base))
    with torch.no_grad():
        for module in e.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
    x = torch.randn(3, 3, 16, 16)
    e.eval()
    folded = e(x)
    manual = _encoder_with_explicit_bn(e, x)
    torch.testing.assert_close(folded, manual, atol=1e-4, rtol=1e-4)
    e.train()
    assert not torch.allclose(e(x), folded, atol=1e-3)  # batch statistics in training mode


def _encoder_with_explicit_bn(e: Encoder, x: torch.Tensor) -> torch.Tensor:
    """The encoder's forward written out with eval-mode BatchNorm as its formula."""

    def bn(block, y):
        m = block.bn
        shape = (1, -1, 1, 1)
        scale = (m.weight / torch.sqrt(m.running_var + m.eps)).view(shape)
        return (y - m.running_mean.view(shape)) * scale + m.bias.view(shape)

    def lrelu(y):
        return F.leaky_relu(y, 0.2)

    with torch.no_grad():
        y = lrelu(bn(e.block0.bn, F.conv2d(x, e.block0.conv.weight, padding=1)))
        n = e.config.num_blocks
        for i in range(1, n - 1):
            blk = getattr(e, f"block{i}")
            y = F.avg_pool2d(y, 2)
            short = lrelu(bn(blk.bn, F.conv2d(y, blk.conv.weight))) if blk.has_shortcut_conv else y
            h = F.conv2d(y, blk.conv1.weight, padding=1) + blk.wscale1.bias.view(1, -1, 1, 1)
            h = lrelu(bn(blk.bn1, h))
            h = F.conv2d(h, blk.conv2.weight, padding=1) + blk.wscale2.bias.view(1, -1, 1, 1)
            y = lrelu(bn(blk.bn2, h)) + short
        last = getattr(e, f"block{n - 1}")
        flat = F.linear(y.reshape(y.shape[0], -1), last.fc.weight) * last.scale
        out = bn(last.bn, flat[:, :, None, None])[:, :, 0, 0]
    return out.view(x.shape[0], e.config.code_layers, e.config.w_dim)
