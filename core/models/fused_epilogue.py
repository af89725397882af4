"""The generator's epilogue tail fused (frozen-weight inversion path).

Unfused, a StyleGAN epilogue after its convolution is five tensor-sized operations forward and
more backward: ``+ noise·strength + bias``, LeakyReLU, instance norm, ``· (s0 + 1)``, ``+ s1``.
Their backward passes (``group_norm``'s above all) dominated the non-convolution time of a
bfloat16 inversion step. :func:`fused_epilogue` computes the same function as

    h = leaky_relu(x + shift);  y = (h − mean_hw(h)) / sqrt(var_hw(h) + eps) · (s0 + 1) + s1

in two ways, both with float32 (float64 for float64 inputs) statistics and arithmetic whatever
the input dtype:

* per image: for a batch of one, instance norm with a per-channel affine *is* training-mode
  batch norm, so the tail after the activation is a single ``F.batch_norm`` call with weight
  ``s0 + 1`` and bias ``s1``: torch's native kernel (two passes forward, two backward,
  vectorised over channels-last rows) instead of about ten tensor-sized operations each way —
  1.3–1.9× faster forward + backward than the hand-derived function below
  (``benchmarks/fused_epilogue.py``). Batches of several images split into single images and
  concatenate the results (a copy each way) where the maps are large (≥ 128×128);
* several images on smaller maps: the normalisation and the style folded into one
  per-(sample, channel) gain (``y = (h − mean) · gain + s1``) with a hand-derived backward
  (two reductions, two elementwise passes); there the split and the concatenations measured
  1.6–2.5× slower.

Gradients flow to ``x`` and the style ``s`` only: ``shift`` (the fixed noise times its
strength plus the bias) must be a constant, which holds when the generator is frozen and its
noise is not re-randomised (an inversion). Training keeps the unfused path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from idinvert.core.models.layers import LEAKY_SLOPE

#: Feature maps of at least this many pixels take the per-image batch norm also in batches of
#: several images (measured faster from 128×128 on, slower at 64×64 and below).
PER_IMAGE_MIN_PIXELS = 128 * 128


def _activated(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``leaky_relu(x + shift)`` in float32 (float64 if an input is), as a fresh tensor."""
    compute = torch.promote_types(torch.promote_types(x.dtype, shift.dtype), torch.float32)
    return F.leaky_relu_(torch.add(shift.to(compute), x), LEAKY_SLOPE)  # a fresh sum: in place


class _FusedEpilogue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift, style, eps):  # type: ignore[override]
        channels = x.shape[1]
        n = x.shape[2] * x.shape[3]
        h = _activated(x, shift)
        # two-pass statistics (torch.var_mean is several times slower on these layouts)
        mean = h.sum(dim=(2, 3), keepdim=True) / n
        centred = h - mean
        rstd = torch.rsqrt((centred * centred).sum(dim=(2, 3), keepdim=True) / n + eps)
        s = style.to(h.dtype).view(-1, 2, channels, 1, 1)
        gain = rstd * (s[:, 0] + 1.0)
        y = torch.addcmul(s[:, 1], centred, gain)
        ctx.save_for_backward(h, mean, rstd, gain)
        ctx.x_dtype = x.dtype
        ctx.style_dtype = style.dtype
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        h, mean, rstd, gain = ctx.saved_tensors
        dy = dy.to(h.dtype)
        n = h.shape[2] * h.shape[3]
        sum_dy = dy.sum(dim=(2, 3), keepdim=True)  # = d s1
        sum_dy_h = (dy * h).sum(dim=(2, 3), keepdim=True)
        d_scale = rstd * (sum_dy_h - mean * sum_dy)  # Σ dy · ĥ  = d s0
        # dh = gain · (dy − mean(dy) − ĥ · mean(dy · ĥ)), with ĥ = (h − mean) · rstd, expanded
        # into gain · dy + c_h · h + c_0 (per-channel coefficients): two fused multiply-adds.
        c_h = -gain * rstd * d_scale / n
        c_0 = -gain * sum_dy / n - c_h * mean
        dh = torch.addcmul(torch.addcmul(c_0, gain, dy), c_h, h)
        # h is LeakyReLU's output: same sign as its input, so it selects the slope
        dx = torch.ops.aten.leaky_relu_backward(dh, h, LEAKY_SLOPE, True).to(ctx.x_dtype)
        d_style = torch.stack([d_scale, sum_dy], dim=1).flatten(1).to(ctx.style_dtype)
        return dx, None, d_style, None


def fused_epilogue(
    x: torch.Tensor, shift: torch.Tensor, style: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """LeakyReLU(x + shift) → instance norm → ``· (s0 + 1) + s1``, fused.

    Args:
        x: convolution output ``[B, C, H, W]`` (any float dtype, any layout).
        shift: constant added before the activation, broadcastable to ``x`` (e.g. the frozen
            noise · strength + bias ``[1, C, H, W]``); receives no gradient.
        style: ``[B, 2C]``: first C are scale − 1, last C the shift (the StyleMod dense output).
        eps: added to the biased variance.

    Returns:
        ``[B, C, H, W]`` float32 (float64 if an input is), in the memory layout of
        ``x + shift``.
    """
    if shift.requires_grad:
        raise ValueError("fused_epilogue: shift must be a constant (it receives no gradient)")
    batch, channels, height, width = x.shape
    if batch != 1 and height * width < PER_IMAGE_MIN_PIXELS:
        return _FusedEpilogue.apply(x, shift, style, eps)
    images = (x,) if batch == 1 else x.split(1)
    rows = []
    for image, (scale, bias) in zip(images, style.view(batch, 2, channels), strict=True):
        h = _activated(image, shift)
        scale, bias = scale.to(h.dtype), bias.to(h.dtype)
        rows.append(F.batch_norm(h, None, None, scale + 1.0, bias, True, 0.0, eps))
    return rows[0] if batch == 1 else torch.cat(rows)
