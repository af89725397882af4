"""Network definitions: generator, encoder, perceptual net."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class _SkipRandomInit(TorchFunctionMode):
    """Turns random initialisers into no-ops: ``torch.randn`` → ``torch.empty`` and the
    in-place ``uniform_`` / ``normal_`` (what ``nn.init`` and ``reset_parameters`` call) leave
    the memory as it is, as do all of ``torch.nn.init`` (what ``reset_parameters`` calls).
    Everything else (constants, ``torch.zeros``/``torch.ones``) runs normally.
    Torch function modes are per thread, so other threads are unaffected."""

    _IN_PLACE = frozenset({"uniform_", "normal_", "random_", "bernoulli_"})

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if func is torch.randn:
            kwargs.pop("generator", None)
            return torch.empty(*args, **kwargs)
        name = getattr(func, "__name__", None)
        # nn.init's functions run their tensor method with this mode switched off, so they are
        # skipped as a whole (they only ever fill weights that the file then replaces).
        if name in self._IN_PLACE or getattr(func, "__module__", None) == "torch.nn.init":
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor):
                return target
        return func(*args, **kwargs)


def build_without_init(factory: Callable[[], ModuleT]) -> ModuleT:
    """Build a module without random initialisation (its parameters hold uninitialised
    memory, never touched): for a network whose weights are loaded right after with
    :func:`assign_state`. Randomly initialising the ffhq256 generator and encoder costs
    ≈ 2 s that the weight files then overwrite. (The ``meta`` device would avoid the memory
    too, but its first use imports ≈ 1.2 s of torch's meta registrations and sympy.)
    """
    with _SkipRandomInit():
        return factory()


def assign_state(net: ModuleT, state: Mapping[str, torch.Tensor]) -> ModuleT:
    """Load ``state`` into a module built by :func:`build_without_init`, taking the tensors as
    they are (``assign=True``: no copy). Every parameter and persistent buffer must be in
    ``state``, except BatchNorm's ``num_batches_tracked`` (zero when absent).

    Raises:
        RuntimeError: names the keys ``state`` lacks.
    """
    expected = net.state_dict()
    full = dict(state)
    for key, value in expected.items():
        if key not in full and key.endswith("num_batches_tracked"):
            full[key] = torch.zeros((), dtype=value.dtype)
    missing = sorted(set(expected) - set(full))
    if missing:
        raise RuntimeError(f"{type(net).__name__}: no weights for {missing[:8]}")
    net.load_state_dict(full, strict=False, assign=True)
    return net
