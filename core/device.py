"""Explicit device selection (no module-level device globals)."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """Turn ``"auto"``/``None``/``"cpu"``/``"cuda[:i]"``/``"mps"`` into a ``torch.device``.

    ``auto`` picks CUDA, then Apple MPS, then the CPU.

    Raises:
        ValueError: the requested device does not exist on this machine.
    """
    if isinstance(spec, torch.device):
        return spec
    name = (spec or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {spec!r} requested but CUDA is not available here; use --device cpu"
        )
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            f"device {spec!r} requested but MPS is not available here; use --device cpu"
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device
