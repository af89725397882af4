"""Convolutions of frozen channels-last copies with their kernels reordered once, not per call.

oneDNN computes a convolution with its kernel in a blocked layout (``AcdB64a2b`` for a
192-channel bfloat16 kernel on AVX-512, ``Acdb32a`` for float32, …). Given an ordinary kernel,
every call reorders it first — for the forward pass, and again into another layout for the
input gradient. For the large kernels of small-spatial layers that costs as much as the
convolution itself: a 1024→1024 3×3 bfloat16 kernel on a 4×4 input (the ffhq256 encoder)
took 6.4 ms forward + backward with the reorders, 1.8 ms without; a 512→512 4×4 stride-2
transposed convolution of an 8×8 input 5.9 ms, 2.8 ms without (2-core Zen 4, minima;
``benchmarks/reordered_conv.py``).

:func:`frozen_conv2d` and :func:`frozen_conv_transpose2d` store two reordered kernels per
layer (derived tensors, see :mod:`idinvert.core.models.derived`): one for the forward pass and
one for the input gradient, itself a forward convolution — for a stride-1 convolution with the
transposed, spatially flipped kernel (``dx = conv(dy, flip(Wᵀ), padding = k − 1 − p)``), for a
transposed convolution the strided convolution with the same kernel; that is how oneDNN
computes them too: the results are equal. The layout oneDNN picks depends on the input's
shape, so the kernels are reordered again when it changes. The weight gradient is never
computed: the kernel is frozen.

Used only where it can be and pays: an x86-64 CPU with oneDNN, a channels-last input (the layout of
:func:`idinvert.core.precision.lowered_copy`'s copies), a frozen kernel of at least
:data:`MIN_REORDERED_KERNEL` elements, no groups or dilation, stride 1 (convolutions; any
stride for transposed ones, whose output size is then exact), float32, or bfloat16 on a CPU
with native bfloat16. Everything else goes through :func:`torch.nn.functional.conv2d` and
:func:`~torch.nn.functional.conv_transpose2d`.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.derived import derived
from idinvert.core.precision import native_bf16

Pair = tuple[int, int]

#: Smallest kernel (elements) worth reordering once: below it the saved reorder is smaller than
#: the custom autograd function's own overhead (2-core Zen 4, per-layer timings at 64 px:
#: 192×192×3×3 and larger 1.2–1.6× faster fwd+bwd, 128×128×3×3 and smaller 0.7–1.0×).
MIN_REORDERED_KERNEL = 1 << 18


def _conv(x: torch.Tensor, packed: torch.Tensor, bias, padding: Pair, stride: Pair) -> torch.Tensor:
    """Convolution of ``x [B, C, H, W]`` with a oneDNN-reordered kernel."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, bias, list(padding), list(stride), [1, 1], 1, "none", [], ""
    )


def _conv_transpose(
    x: torch.Tensor, packed: torch.Tensor, bias, padding: Pair, stride: Pair
) -> torch.Tensor:
    """Transposed convolution of ``x [B, C, H, W]`` with a oneDNN-reordered kernel."""
    return torch.ops.mkldnn._convolution_transpose_pointwise(
        x, packed, bias, list(padding), [0, 0], list(stride), [1, 1], 1, "none", [], ""
    )


def _reordered(kernel: torch.Tensor, padding: Pair, stride: Pair, input_shape) -> torch.Tensor:
    """Convolution ``kernel [C_out, C_in, kh, kw]`` in the blocked layout oneDNN picks for
    inputs of ``input_shape`` (an MKLDNN tensor). The layout depends on the shape: a kernel
    reordered for another shape is reordered again by every call, more slowly than from plain."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(
        kernel.to_mkldnn(), list(padding), list(stride), [1, 1], 1, list(input_shape)
    )


def _reordered_transpose(kernel: torch.Tensor, padding: Pair, stride: Pair, input_shape):
    """Transposed-convolution ``kernel [C_in, C_out, kh, kw]`` reordered for ``input_shape``."""
    return torch.ops.mkldnn._reorder_convolution_transpose_weight(
        kernel, list(padding), [0, 0], list(stride), [1, 1], 1, list(input_shape)
    )


@dataclass(frozen=True)
class _Plan:
    """One frozen layer at one input shape: reordered kernels and how to apply them. The
    gradient's kernel is reordered at the first backward pass (inference never needs it)."""

    transposed: bool
    forward_kernel: torch.Tensor
    reorder_grad_kernel: Callable[[], torch.Tensor]
    padding: Pair
    stride: Pair
    grad_padding: Pair

    @functools.cached_property
    def grad_kernel(self) -> torch.Tensor:
        return self.reorder_grad_kernel()

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.transposed:
            return _conv_transpose(x, self.forward_kernel, bias, self.padding, self.stride)
        return _conv(x, self.forward_kernel, bias, self.padding, self.stride)

    def input_grad(self, grad_out: torch.Tensor) -> torch.Tensor:
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        return _conv(grad_out, self.grad_kernel, None, self.grad_padding, self.stride)


def _conv_plan(kernel: torch.Tensor, padding: Pair, in_shape: tuple[int, ...]) -> _Plan:
    n, _, h, w = in_shape
    kh, kw = kernel.shape[-2:]
    out_shape = (n, kernel.shape[0], h + 2 * padding[0] - kh + 1, w + 2 * padding[1] - kw + 1)
    grad_padding = (kh - 1 - padding[0], kw - 1 - padding[1])

    def grad_kernel() -> torch.Tensor:
        flipped = kernel.transpose(0, 1).flip(-2, -1).contiguous(memory_format=torch.channels_last)
        return _reordered(flipped, grad_padding, (1, 1), out_shape)

    return _Plan(
        False,
        _reordered(kernel, padding, (1, 1), in_shape),
        grad_kernel,
        padding,
        (1, 1),
        grad_padding,
    )


def _transpose_plan(
    kernel: torch.Tensor, padding: Pair, stride: Pair, in_shape: tuple[int, ...]
) -> _Plan:
    n, _, h, w = in_shape
    kh, kw = kernel.shape[-2:]
    out_shape = (
        n,
        kernel.shape[1],
        (h - 1) * stride[0] - 2 * padding[0] + kh,
        (w - 1) * stride[1] - 2 * padding[1] + kw,
    )
    # the input gradient of a transposed convolution is the strided convolution with the same
    # kernel read as [C_out', C_in'] = [C_in, C_out]
    return _Plan(
        True,
        _reordered_transpose(kernel, padding, stride, in_shape),
        lambda: _reordered(kernel, padding, stride, out_shape),
        padding,
        stride,
        padding,
    )


class _ReorderedConv(torch.autograd.Function):
    """A frozen layer's ``plan.forward(x, bias)`` with the gradient for ``x`` only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: _Plan, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.plan = plan
        return plan.forward(x, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return ctx.plan.input_grad(grad_out), None, None


def _reorderable(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: Pair
) -> bool:
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    if not all(0 <= p < k for p, k in zip(padding, weight.shape[-2:], strict=True)):
        return False
    if weight.numel() < MIN_REORDERED_KERNEL:
        return False
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        return False
    if weight.dtype != x.dtype or x.ndim != 4 or weight.ndim != 4:
        return False
    if not (
        x.is_contiguous(memory_format=torch.channels_last)
        and weight.is_contiguous(memory_format=torch.channels_last)
    ):
        return False
    if not (onednn_x86() and torch.backends.mkldnn.enabled):
        return False
    if weight.dtype == torch.bfloat16:
        return _native_bf16()
    return weight.dtype == torch.float32


@functools.cache
def onednn_x86() -> bool:
    """oneDNN on an x86-64 CPU (where this was measured) with the operators used here and in
    :mod:`idinvert.core.models.frozen_linear`."""
    ops = ("_convolution_pointwise", "_convolution_transpose_pointwise", "_linear_pointwise")
    return (
        platform.machine().lower() in ("x86_64", "amd64")
        and torch.backends.mkldnn.is_available()
        and all(hasattr(torch.ops.mkldnn, op) for op in ops)
    )


@functools.cache
def _native_bf16() -> bool:
    return native_bf16(torch.device("cpu"))  # the precision module's probe, read once


def _pair(value: int | tuple[int, int]) -> Pair:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _apply(owner: nn.Module, name: str, x, weight, bias, make_plan) -> torch.Tensor:
    shape = tuple(x.shape)
    plan = derived(owner, f"{name}.reordered", lambda: make_plan(shape), [weight], key=shape)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return plan.forward(x, bias)
    return _ReorderedConv.apply(x, plan, bias)


def frozen_conv2d(
    owner: nn.Module,
    name: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1), with kernels reordered once.

    Args:
        owner: module that stores the reordered kernels (under ``name``).
        name: key of this convolution within ``owner``.
        x: ``[B, C_in, H, W]``, same dtype as ``weight``.
        weight: ``[C_out, C_in, kh, kw]``.
        bias: ``[C_out]`` or ``None``.
        padding: zero padding of each side, per dimension.

    Returns:
        ``[B, C_out, H + 2p_h − kh + 1, W + 2p_w − kw + 1]``, channels-last when reordered.
    """
    pad = _pair(padding)
    if not _reorderable(x, weight, bias, pad):
        return F.conv2d(x, weight, bias, padding=pad)
    return _apply(owner, name, x, weight, bias, lambda shape: _conv_plan(weight, pad, shape))


def frozen_conv_transpose2d(
    owner: nn.Module,
    name: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=stride, padding=padding)``, kernels reordered
    once: ``x [B, C_in, H, W]``, ``weight [C_in, C_out, kh, kw]`` (same dtype), the output
    ``[B, C_out, (H − 1)·s_h − 2p_h + kh, (W − 1)·s_w − 2p_w + kw]``; ``owner`` and ``name``
    as in :func:`frozen_conv2d`."""
    pad, st = _pair(padding), _pair(stride)
    if not _reorderable(x, weight, None, pad):
        return F.conv_transpose2d(x, weight, stride=st, padding=pad)
    return _apply(
        owner, name, x, weight, None, lambda shape: _transpose_plan(weight, pad, st, shape)
    )
