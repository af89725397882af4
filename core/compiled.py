"""The inversion step compiled with ``torch.compile`` (opt-in: ``invert(..., compile_step=True)``,
``idinvert invert --compile``).

On CUDA the step is compiled in inductor's ``"reduce-overhead"`` mode, which also records it
as CUDA graphs (forward and backward are replayed as two graph launches instead of hundreds of
kernel launches: what dominates a batch-1 step on a large GPU). Elsewhere inductor's default
mode fuses the elementwise work around the convolutions. Compiling costs tens of seconds once
per process, model and input shape (inductor caches to disk, so later processes start faster):
worth it for many steps or many images, not for one quick inversion. Measured on a 2-core CPU
it did not pay (``benchmarks/inversion.py --compile`` prints the comparison on any device).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

FunctionT = TypeVar("FunctionT", bound=Callable[..., torch.Tensor])


def compiled(function: FunctionT, device: torch.device) -> FunctionT:
    """``torch.compile(function)`` for ``device``: CUDA graphs on CUDA, inductor elsewhere.

    Shapes are static (one compilation per batch shape); tensors derived from frozen weights are
    traced as ordinary operations (see :mod:`idinvert.core.models.derived`).
    """
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(function, mode=mode, dynamic=False)


def mark_step(device: torch.device) -> None:
    """Tell CUDA-graph trees that a new optimisation step begins (outputs of the previous
    replay may be overwritten from here on); nothing to do on other devices."""
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()
