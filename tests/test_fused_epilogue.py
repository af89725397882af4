"""The fused epilogue (LeakyReLU → instance norm → style) of frozen channels-last generators."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_bundle

from idinvert.core.models.fused_epilogue import fused_epilogue
from idinvert.core.precision import lowered_copy


def official_epilogue_tail(x, shift, style, eps=1e-8):
    """The official order written out: x + noise·strength + bias, LeakyReLU(0.2), x − mean,
    x / sqrt(mean(x²) + eps) over H, W, then x · (s0 + 1) + s1 with s = [B, 2, C]."""
    h = x + shift
    h = torch.where(h >= 0, h, 0.2 * h)
    h = h - h.mean(dim=(2, 3), keepdim=True)
    h = h / torch.sqrt(h.square().mean(dim=(2, 3), keepdim=True) + eps)
    s = style.view(x.shape[0], 2, x.shape[1], 1, 1)
    return h * (s[:, 0] + 1) + s[:, 1]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_the_official_order_and_its_gradients_in_float64(layout, batch):
    torch.manual_seed(batch)
    x = (torch.randn(batch, 5, 6, 4, dtype=torch.float64) + 0.3).contiguous(memory_format=layout)
    shift = torch.randn(1, 5, 6, 4, dtype=torch.float64)
    style = torch.randn(batch, 10, dtype=torch.float64)
    dy = torch.randn(batch, 5, 6, 4, dtype=torch.float64)

    def run(fn):
        a, s = x.clone().requires_grad_(True), style.clone().requires_grad_(True)
        y = fn(a, shift, s)
        y.backward(dy)
        return y, a.grad, s.grad

    y, dx, ds = run(fused_epilogue)
    y_ref, dx_ref, ds_ref = run(official_epilogue_tail)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ds, ds_ref, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(
        lambda a, s: fused_epilogue(a, shift, s),
        (x.clone().requires_grad_(True), style.clone().requires_grad_(True)),
    )


@pytest.mark.parametrize("batch", [1, 2])
def test_bfloat16_input_gives_float32_output_and_a_bfloat16_gradient(batch):
    torch.manual_seed(0)
    x = torch.randn(batch, 8, 16, 16).to(torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    shift = (torch.randn(1, 8, 16, 16) * 0.3).contiguous(memory_format=torch.channels_last)
    style = torch.randn(batch, 16, requires_grad=True)
    y = fused_epilogue(x, shift, style)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, official_epilogue_tail(x.detach().float(), shift, style))
    dy = torch.randn(batch, 8, 16, 16)
    y.backward(dy)
    assert x.grad.dtype == torch.bfloat16 and style.grad.dtype == torch.float32
    # the gradients of the official order, to bfloat16's rounding of dx
    a = x.detach().float().requires_grad_(True)
    s = style.detach().clone().requires_grad_(True)
    official_epilogue_tail(a, shift, s).backward(dy)
    torch.testing.assert_close(x.grad.float(), a.grad, rtol=1e-2, atol=1e-2 * a.grad.abs().max())
    torch.testing.assert_close(style.grad, s.grad, rtol=1e-4, atol=1e-4 * s.grad.abs().max())


def test_one_image_runs_as_a_single_batch_norm_and_several_as_the_hand_fused_function():
    """Batch 1: instance norm + per-channel affine is training-mode batch norm (torch's own
    kernel forward and backward); batches of several keep the hand-derived function on small
    maps and run image by image on large ones."""
    shift = torch.zeros(1, 4, 8, 8)
    one = fused_epilogue(torch.randn(1, 4, 8, 8, requires_grad=True), shift, torch.randn(1, 8))
    several = fused_epilogue(torch.randn(3, 4, 8, 8, requires_grad=True), shift, torch.zeros(3, 8))
    assert type(one.grad_fn).__name__ == "NativeBatchNormBackward0"
    assert type(several.grad_fn).__name__ == "_FusedEpilogueBackward"


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_several_images_on_large_maps_go_image_by_image_with_the_official_values(layout):
    torch.manual_seed(4)
    size = 128  # the smallest map that takes the per-image path
    x = (torch.randn(2, 3, size, size) + 0.2).contiguous(memory_format=layout)
    shift = 0.3 * torch.randn(1, 3, size, size)
    style = torch.randn(2, 6)
    dy = torch.randn(2, 3, size, size)
    a, s = x.clone().requires_grad_(True), style.clone().requires_grad_(True)
    y = fused_epilogue(a, shift, s)
    assert type(y.grad_fn).__name__ == "CatBackward0"
    y.backward(dy)
    a_ref, s_ref = x.double().requires_grad_(True), style.double().requires_grad_(True)
    y_ref = official_epilogue_tail(a_ref, shift.double(), s_ref)
    y_ref.backward(dy.double())
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.grad.double(), a_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s.grad.double(), s_ref.grad, rtol=1e-4, atol=1e-3)


def test_a_shift_that_needs_a_gradient_is_refused():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="shift must be a constant"):
        fused_epilogue(x, torch.zeros(1, 2, 4, 4, requires_grad=True), torch.zeros(1, 4))


def _epilogue_backward_names(generator: torch.nn.Module, wp: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [generator.synthesis(wp).grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return names


def test_frozen_channels_last_copies_use_it_and_training_does_not():
    bundle = build_tiny_bundle(resolution=16, w_dim=8)
    wp = bundle.generator.z_to_wp(torch.randn(2, 8)).detach().requires_grad_(True)
    # an inversion on a lowered (channels-last) copy: every epilogue fused (one image: as
    # batch norm)
    low = bundle.lowered(torch.bfloat16).generator
    assert "_FusedEpilogueBackward" in _epilogue_backward_names(low, wp.to(torch.bfloat16))
    one = _epilogue_backward_names(low, wp[:1].to(torch.bfloat16))
    assert "NativeBatchNormBackward0" in one and "_FusedEpilogueBackward" not in one
    # the float32 original (contiguous): the exact official path, no fused function
    assert "_FusedEpilogueBackward" not in _epilogue_backward_names(bundle.generator, wp)
    # a channels-last generator being trained (bias needs its gradient): unfused, bias learns
    trained = lowered_copy(bundle.generator, torch.float32)
    for param in trained.parameters():
        param.requires_grad_(True)
    trained.synthesis(wp.detach()).square().mean().backward()
    biases = [p for n, p in trained.named_parameters() if n.endswith("epilogue.bias")]
    assert biases and all(p.grad is not None and p.grad.abs().sum() > 0 for p in biases)


def test_fused_copy_gives_the_float32_generator_output_and_gradient():
    """A float32 channels-last copy takes the fused path with float32 arithmetic: its images
    and the code gradient match the contiguous original's (the official arithmetic)."""
    bundle = build_tiny_bundle(resolution=32, w_dim=16)
    torch.manual_seed(5)
    wp = bundle.generator.z_to_wp(torch.randn(1, 16)).detach()
    target = torch.rand(1, 3, 32, 32) * 2 - 1

    def image_and_grad(generator):
        z = wp.clone().requires_grad_(True)
        image = generator.synthesis(z)
        (image - target).square().mean().backward()
        return image.detach(), z.grad

    image, grad = image_and_grad(bundle.generator)
    image_cl, grad_cl = image_and_grad(lowered_copy(bundle.generator, torch.float32))
    # channels-last convolutions sum in another order: float32 rounding apart, no more
    torch.testing.assert_close(image_cl, image, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(grad_cl, grad, rtol=1e-3, atol=1e-6)
