"""frozen_conv2d: kernels reordered once give F.conv2d's output and input gradient."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import idinvert.core.models.packed_conv as packed_conv
from idinvert.core.models.derived import CACHE_ATTRIBUTE
from idinvert.core.models.packed_conv import (
    MIN_REORDERED_KERNEL,
    frozen_conv2d,
    frozen_conv_transpose2d,
)
from idinvert.core.precision import lowered_copy

pytestmark = pytest.mark.skipif(
    not packed_conv.onednn_x86(), reason="reordered kernels are used on x86-64 oneDNN only"
)

CL = torch.channels_last


def _native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


DTYPES = [
    torch.float32,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(not _native_bf16(), reason="CPU without native bfloat16"),
    ),
]


def _stored(owner: nn.Module) -> set[str]:
    return set(owner.__dict__.get(CACHE_ATTRIBUTE, {}))


def _case(shape, kernel, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=CL)
    w = (0.05 * torch.randn(kernel, generator=gen)).to(dtype).contiguous(memory_format=CL)
    b = torch.randn(kernel[0], generator=gen).to(dtype)
    return x, w, b


CASES = [
    # convolutions: (input, kernel [C_out, C_in, kh, kw], stride 1, padding)
    ("conv", (1, 256, 8, 8), (512, 256, 3, 3), 1, 1),  # same-size 3×3, the common case
    ("conv", (2, 512, 4, 4), (512, 512, 3, 3), 1, 1),  # a batch
    ("conv", (1, 512, 6, 6), (512, 512, 3, 3), 1, 0),  # valid convolution: gradient padding 2
    ("conv", (1, 512, 8, 8), (512, 512, 1, 1), 1, 0),  # 1×1 (exactly the size threshold)
    ("conv", (1, 128, 7, 9), (256, 128, 3, 5), 1, (1, 2)),  # rectangular, odd sizes
    # transposed: (input, kernel [C_in, C_out, kh, kw], stride, padding)
    ("transposed", (1, 256, 8, 8), (256, 192, 4, 4), 2, 1),  # the generator's upsampling
    ("transposed", (2, 512, 4, 4), (512, 256, 4, 4), 2, 1),  # a batch
    ("transposed", (1, 512, 5, 5), (512, 512, 2, 2), 2, 0),  # kernel = stride: no overlap
    ("transposed", (1, 128, 8, 8), (128, 256, 3, 3), 1, 1),  # stride 1
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("kind", "shape", "kernel", "stride", "padding"), CASES)
def test_output_and_input_gradient_equal_torch(dtype, kind, shape, kernel, stride, padding):
    x, w, b = _case(shape, kernel, dtype)
    assert w.numel() >= MIN_REORDERED_KERNEL
    owner = nn.Module()
    xa = x.detach().requires_grad_(True)
    xb = x.detach().requires_grad_(True)
    if kind == "conv":
        ya = frozen_conv2d(owner, "conv", xa, w, b, padding)
        yb = F.conv2d(xb, w, b, padding=padding)
    else:
        ya = frozen_conv_transpose2d(owner, "conv", xa, w, stride, padding)
        yb = F.conv_transpose2d(xb, w, stride=stride, padding=padding)
    assert "conv.reordered" in _stored(owner)  # the reordered path was taken
    assert ya.shape == yb.shape and ya.dtype == yb.dtype
    # float32: summation order only (values ~3); bfloat16: rounding of the output
    rtol, atol = (1e-5, 1e-4) if dtype == torch.float32 else (1e-2, 1e-2)
    torch.testing.assert_close(ya.float(), yb.float(), rtol=rtol, atol=atol)
    dy = torch.randn(yb.shape).to(dtype).contiguous(memory_format=CL)
    ya.backward(dy)
    yb.backward(dy)
    torch.testing.assert_close(xa.grad.float(), xb.grad.float(), rtol=rtol, atol=atol)
    assert xa.grad.abs().sum() > 0


def test_gradient_of_a_non_channels_last_upstream_gradient():
    x, w, _ = _case((1, 256, 8, 8), (512, 256, 3, 3), torch.float32)
    xa = x.detach().requires_grad_(True)
    y = frozen_conv2d(nn.Module(), "conv", xa, w, None, 1)
    dy = torch.randn(y.shape)  # NCHW, as a loss on a permuted view would send it
    y.backward(dy)
    xb = x.detach().requires_grad_(True)
    F.conv2d(xb, w, padding=1).backward(dy)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-4)


def test_a_new_input_shape_reorders_again_and_stays_right():
    x, w, b = _case((1, 512, 4, 4), (512, 512, 3, 3), torch.float32)
    owner = nn.Module()
    frozen_conv2d(owner, "conv", x, w, b, 1)
    first = owner.__dict__[CACHE_ATTRIBUTE]["conv.reordered"][2]
    x4 = torch.randn(4, 512, 16, 16).contiguous(memory_format=CL)
    y = frozen_conv2d(owner, "conv", x4, w, b, 1)
    torch.testing.assert_close(y, F.conv2d(x4, w, b, padding=1), rtol=1e-5, atol=1e-4)
    assert owner.__dict__[CACHE_ATTRIBUTE]["conv.reordered"][2] is not first
    frozen_conv2d(owner, "conv", x4, w, b, 1)  # same shape: the stored kernels are reused
    again = owner.__dict__[CACHE_ATTRIBUTE]["conv.reordered"][2]
    frozen_conv2d(owner, "conv", x4, w, b, 1)
    assert owner.__dict__[CACHE_ATTRIBUTE]["conv.reordered"][2] is again


@pytest.mark.parametrize(
    "case",
    ["nchw input", "kernel learns", "small kernel", "strided layout kernel"],
)
def test_other_convolutions_go_through_f_conv2d(case):
    x, w, b = _case((1, 256, 8, 8), (512, 256, 3, 3), torch.float32)
    if case == "nchw input":
        x = x.contiguous()
    elif case == "kernel learns":
        w = w.detach().requires_grad_(True)
    elif case == "small kernel":
        x, w, b = _case((1, 64, 8, 8), (64, 64, 3, 3), torch.float32)
    else:
        w = w.contiguous()
    owner = nn.Module()
    y = frozen_conv2d(owner, "conv", x, w, b, 1)
    assert "conv.reordered" not in _stored(owner)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), rtol=1e-6, atol=1e-6)
    if case == "kernel learns":  # training: the weight gradient still flows
        y.sum().backward()
        assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def bundled_model():
    from idinvert.hub.api import load_model

    return load_model()


def test_lowered_copy_with_reordered_kernels_gives_the_same_image_and_gradient(
    bundled_model,
):
    """The float32 channels-last copy of the bundled generator, encoder and VGG with and
    without reordered kernels: same outputs, same gradient for the code."""
    nets = {
        "generator": bundled_model.generator.synthesis,
        "encoder": bundled_model.encoder,
        "perceptual": bundled_model.perceptual,
    }
    torch.manual_seed(0)
    r = bundled_model.resolution
    code = torch.randn(1, *bundled_model.code_shape)
    image = torch.rand(1, 3, r, r) * 2 - 1
    results = {}
    for side in ("reordered", "plain"):
        copies = {k: lowered_copy(v, torch.float32) for k, v in nets.items()}
        original = packed_conv._reorderable
        if side == "plain":
            packed_conv._reorderable = lambda *args: False
        try:
            z = code.clone().requires_grad_(True)
            x = image.clone().requires_grad_(True)
            out = copies["generator"](z)
            loss = out.square().mean() + copies["perceptual"](out).mean()
            loss = loss + copies["encoder"](x).square().mean()
            loss.backward()
            results[side] = (out.detach(), z.grad, x.grad)
        finally:
            packed_conv._reorderable = original
        reordered = {
            type(sub).__name__ + ("/up" if getattr(sub, "upsample", False) else "")
            for m in copies.values()
            for sub in m.modules()
            if "conv.reordered" in _stored(sub) or any(".reordered" in k for k in _stored(sub))
        }
        expected = {"ConvBlock", "ConvBlock/up", "ResBlock", "PerceptualNet"}
        assert reordered == (expected if side == "reordered" else set()), reordered
    for a, b in zip(results["reordered"], results["plain"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_used_copy_can_still_be_copied():
    """Reordered kernels (oneDNN tensors) cannot be deep-copied; a module's store of derived
    tensors is a cache, so a copy starts without it."""
    x, w, b = _case((1, 256, 8, 8), (512, 256, 3, 3), torch.float32)
    owner = nn.Module()
    frozen_conv2d(owner, "conv", x, w, b, 1)
    assert "conv.reordered" in _stored(owner)
    clone = copy.deepcopy(owner)
    assert _stored(clone) == set()
