"""Architecture properties of the networks beyond the reference vectors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.layers import fused_upsample_kernel
from idinvert.core.models.perceptual import PerceptualConfig, PerceptualNet


def test_fused_upconv_equals_upsample_then_flipped_conv():
    """The official fused kernel == nearest ×2 upsampling + 3×3 conv with the TF weight
    transposed to OIHW and spatially flipped (the pure-PyTorch reference path)."""
    torch.manual_seed(0)
    w = torch.randn(3, 3, 5, 7)
    x = torch.randn(2, 5, 8, 8)
    fused = F.conv_transpose2d(x, fused_upsample_kernel(w, 0.3), stride=2, padding=1)
    reference = F.conv2d(
        F.interpolate(x, scale_factor=2.0, mode="nearest"),
        w.permute(3, 2, 0, 1).flip(2, 3) * 0.3,
        padding=1,
    )
    assert fused.shape == (2, 7, 16, 16)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("resolution", "layers", "fused_at"),
    [(8, 4, []), (64, 10, []), (128, 12, [128]), (256, 14, [128, 256])],
)
def test_generator_layout(resolution, layers, fused_at):
    cfg = GeneratorConfig(resolution=resolution, z_dim=24, w_dim=16, fmaps_base=512, fmaps_max=16)
    g = Generator(cfg)
    assert cfg.num_layers == layers
    fused = [
        2 ** (i // 2 + 2) for i in range(2, layers, 2) if getattr(g.synthesis, f"layer{i}").fused
    ]
    assert fused == fused_at
    for i in fused_at:
        idx = 2 * (i.bit_length() - 1) - 4
        block = getattr(g.synthesis, f"layer{idx}")
        assert block.weight.shape[:2] == (3, 3) and not hasattr(block, "conv")
    with torch.no_grad():
        img = g(torch.randn(2, 24))
    assert img.shape == (2, 3, resolution, resolution)
    assert img.abs().max() <= 1.0
    assert g.mapping(torch.randn(2, 24)).shape == (2, layers * 16)


def test_generator_rejects_bad_config_and_inputs():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=100)
    with pytest.raises(ValueError, match="truncation_layers"):
        GeneratorConfig(resolution=8, truncation_layers=-1)
    g = Generator(GeneratorConfig(resolution=8, z_dim=8, w_dim=8, fmaps_base=64, fmaps_max=8))
    with pytest.raises(ValueError, match=r"W\+ codes must be \[N, 4, 8\]"):
        g.synthesis(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="z must be"):
        g.mapping(torch.zeros(1, 9))


def test_truncation_psi_one_is_identity_and_override_works():
    g = Generator(GeneratorConfig(resolution=8, z_dim=8, w_dim=8, fmaps_base=64, fmaps_max=8))
    g.truncation.w_avg.normal_()
    w = torch.randn(3, 4 * 8)
    assert torch.equal(g.truncation(w, psi=1.0), w.view(3, 4, 8))
    t = g.truncation(w, psi=0.0, layers=2)
    assert torch.allclose(t[:, :2], g.truncation.w_avg.expand(3, 2, 8))
    torch.testing.assert_close(t[:, 2:], w.view(3, 4, 8)[:, 2:])


def test_noise_is_fixed_unless_randomized():
    cfg = GeneratorConfig(resolution=16, z_dim=8, w_dim=8, fmaps_base=128, fmaps_max=8)
    g = Generator(cfg).eval()
    for name, p in g.named_parameters():
        if name.endswith("apply_noise.weight"):
            p.data.fill_(1.0)
    wp = torch.randn(1, cfg.num_layers, 8)
    with torch.no_grad():
        assert torch.equal(g.synthesis(wp), g.synthesis(wp))
        assert not torch.equal(g.synthesis(wp, randomize_noise=True), g.synthesis(wp))


def test_encoder_shapes_and_official_blocks():
    cfg = EncoderConfig(resolution=64, w_dim=32, channels_base=8, channels_max=32)
    e = Encoder(cfg).eval()
    assert cfg.code_layers == 10
    assert e(torch.zeros(2, 3, 64, 64)).shape == (2, 10, 32)
    keys = e.state_dict().keys()
    assert "block3.conv.weight" not in keys  # 32 -> 32: identity shortcut
    assert "block1.conv.weight" in keys and "block5.fc.weight" in keys
    assert not e.block0.bn.bn.weight.requires_grad  # frozen gamma as in the official port
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        e(torch.zeros(1, 3, 32, 32))


def test_perceptual_preprocessing_conventions():
    caffe = PerceptualNet(PerceptualConfig("caffe"))
    x = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1)  # R=255, G=127.5, B=0
    y = caffe.preprocess(x).flatten().tolist()
    assert y == pytest.approx([0 - 103.939, 127.5 - 116.779, 255 - 123.68])  # BGR minus mean
    tv = PerceptualNet(PerceptualConfig("torchvision", output_scale=2.0))
    y = tv.preprocess(x).flatten()
    expected = (torch.tensor([1.0, 0.5, 0.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    torch.testing.assert_close(y, expected)
    assert caffe(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 8, 8)
