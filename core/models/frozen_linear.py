"""A frozen dense layer for batches of two or more rows: oneDNN's matrix product, not MKL's.

The encoder's last dense layer is large (ffhq256: 16384 → 7168, 470 MB in float32) and, at
batch 1, a matrix–vector product bound by memory: torch's MKL path reads the matrix once,
21 ms on a 2-core Zen 4. For a few rows MKL's sgemm reads it about once per row (4 rows:
81–112 ms forward, 80–105 ms for the input gradient), oneDNN's matmul once (4 rows: 22–26 ms
forward; 46–48 ms for the input gradient through the transposed view, which it reorders,
instead of keeping a 470 MB transposed copy). Batch 1 stays on torch's own path: the official
arithmetic, and oneDNN's transposed read is slower there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from idinvert.core.models.packed_conv import onednn_x86


def _matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x [B, in] @ weight[out, in]ᵀ`` through oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


class _FrozenLinear(torch.autograd.Function):
    """``x Wᵀ`` with the gradient for ``x`` only (``W`` frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.weight = weight
        return _matmul(x, weight)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return _matmul(grad_out.contiguous(), ctx.weight.t()), None


def frozen_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight)`` for ``x [B, in]``, ``weight [out, in]`` → ``[B, out]``; through
    oneDNN when ``B >= 2``, both float32, the weight frozen, on an x86-64 CPU with oneDNN."""
    if not (
        x.ndim == 2
        and x.shape[0] >= 2
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not weight.requires_grad
        and not torch.compiler.is_compiling()
        and torch.backends.mkldnn.enabled
        and onednn_x86()
    ):
        return F.linear(x, weight)
    x = x.contiguous()
    if torch.is_grad_enabled() and x.requires_grad:
        return _FrozenLinear.apply(x, weight)
    return _matmul(x, weight)
