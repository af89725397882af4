"""Network definitions: generator, encoder, perceptual net."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def build_without_init(factory: Callable[[], ModuleT]) -> ModuleT:
    """Build a module on the ``meta`` device: no memory, no random initialisation.

    Use it for a network whose weights are loaded right after (:func:`assign_state`); building
    the ffhq256 generator and encoder on the CPU costs ≈ 2 s of random numbers that the file
    overwrites. Constants that no weight file carries (blur kernels, truncation coefficients,
    input normalisation) are built on the CPU by the modules themselves.
    """
    with torch.device("meta"):
        return factory()


def assign_state(net: ModuleT, state: Mapping[str, torch.Tensor]) -> ModuleT:
    """Load ``state`` into a module built by :func:`build_without_init`, taking the tensors as
    they are (``assign=True``: no copy). Keys missing from ``state`` that torch fills in by
    itself (BatchNorm's ``num_batches_tracked``) become zeros.

    Raises:
        RuntimeError: a parameter or buffer is still on ``meta`` afterwards (a key the caller
            did not check for).
    """
    expected = net.state_dict()
    full = dict(state)
    for key, value in expected.items():
        if key not in full and key.endswith("num_batches_tracked"):
            full[key] = torch.zeros((), dtype=value.dtype)
    net.load_state_dict(full, strict=False, assign=True)
    left = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{type(net).__name__}: no weights for {left[:8]}")
    return net
