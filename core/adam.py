"""Adam for the inversion's codes: the arithmetic of ``torch.optim.Adam``, without its import cost.

The official loop optimises the W+ codes with ``torch.optim.Adam`` (default betas, eps, no
weight decay). Constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` on first
use, 1.1–1.5 s of every fresh ``idinvert invert`` process on a 2-core CPU (about as long as
one 256 px fp32 step) whether or not anything is compiled. :class:`CodeAdam` performs
the same operations in the same order as ``torch.optim.Adam``'s single-tensor update
(``foreach=False``, what it uses for CPU tensors), so the codes it produces are bit-identical
(``tests/test_adam.py`` compares both for 200 steps); on CUDA, where torch would pick its
``foreach`` kernels, the update is the same formula applied op by op.
"""

from __future__ import annotations

import torch


class CodeAdam:
    """Adam (Kingma & Ba) on one tensor, no weight decay, no AMSGrad.

    Args:
        param: the leaf tensor to optimise (``requires_grad=True``), any shape, float dtype.
        lr: learning rate (> 0).
        betas: decay rates of the first and second moment estimates, each in [0, 1).
        eps: added to the denominator's square root (> 0).
    """

    def __init__(
        self,
        param: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not param.requires_grad or not param.is_leaf:
            raise ValueError("CodeAdam optimises a leaf tensor with requires_grad=True")
        if not lr > 0 or not eps > 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"need lr > 0, eps > 0, 0 <= betas < 1; got {lr}, {eps}, {betas}")
        self.param = param
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.steps_taken = 0
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)

    def zero_grad(self) -> None:
        """Drop the parameter's gradient (``set_to_none``, as ``torch.optim`` does)."""
        self.param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from ``param.grad``; a parameter without a gradient is left as it is."""
        grad = self.param.grad
        if grad is None:
            return
        self.steps_taken += 1
        # torch keeps the count as a float32 tensor and reads it back with .item(); step
        # counts are integers, exact in float32 up to 2**24, so a Python float is the same
        step = float(self.steps_taken)
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        step_size = self.lr / bias_correction1
        denom = (self.exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-step_size)
