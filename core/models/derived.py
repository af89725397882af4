"""Tensors derived from frozen parameters, computed once and reused.

A network that is being inverted (or sampled) never changes its weights, yet its forward pass
rebuilds the same run-time tensors every call: equalized-learning-rate scaled kernels, fused
up-convolution kernels, BatchNorm folded into the preceding convolution, the fixed noise times
its strength plus the bias. :func:`derived` computes such a tensor once and returns the stored
copy for as long as its source parameters are the same tensors at the same version (PyTorch
bumps a tensor's version on every in-place change: ``load_state_dict``, optimiser steps,
``copy_``; ``module.to`` swaps the storage, dtype or device, which are compared too). While
autograd needs the gradient of a source (training), nothing is stored and the tensor is
recomputed every call, inside the graph.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch
from torch import nn

#: Name of the per-module attribute (a dict) that holds the stored tensors.
CACHE_ATTRIBUTE = "_derived_tensors"

#: A derived tensor, or a tuple of tensors computed together.
DerivedT = TypeVar("DerivedT", torch.Tensor, tuple[torch.Tensor, ...])


class DerivedStore(dict):
    """A module's stored derived tensors: a cache, so a copy of the module starts empty
    (``copy.deepcopy`` and pickling; oneDNN-reordered kernels cannot be copied at all)."""

    def __deepcopy__(self, memo: dict) -> DerivedStore:
        return DerivedStore()

    def __reduce__(self) -> tuple:
        return (DerivedStore, ())


def derived(
    owner: nn.Module,
    name: str,
    compute: Callable[[], DerivedT],
    sources: Sequence[torch.Tensor],
    key: Hashable = None,
) -> DerivedT:
    """``compute()``, stored on ``owner`` under ``name`` while ``sources`` stay unchanged.

    Args:
        owner: module that keeps the stored tensor (outside its state dict).
        name: key of the tensor within ``owner``.
        compute: builds the tensor (or a tuple of tensors) from ``sources`` (and constants).
        sources: every parameter/buffer ``compute`` reads.
        key: anything else the result depends on (e.g. an input shape); a different key
            recomputes and replaces the stored tensor.

    Returns:
        The derived tensor; recomputed (not stored) when grad mode is on and a source
        requires a gradient, so training differentiates through it as before, and while
        ``torch.compile`` traces (the compiled graph computes it, fused with its neighbours).
    """
    if torch.compiler.is_compiling() or (
        torch.is_grad_enabled() and any(s.requires_grad for s in sources)
    ):
        return compute()  # in the graph (torch.compile traces it as ordinary operations)
    stamp = (key, *((s._version, s.data_ptr(), s.dtype, s.device) for s in sources))
    store: dict = owner.__dict__.setdefault(CACHE_ATTRIBUTE, DerivedStore())
    entry = store.get(name)
    if entry is not None:
        refs, old_stamp, value = entry
        if old_stamp == stamp and all(r() is s for r, s in zip(refs, sources, strict=True)):
            return value
    with torch.no_grad():
        value = compute()
    store[name] = ([weakref.ref(s) for s in sources], stamp, value)
    return value
