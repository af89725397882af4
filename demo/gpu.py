"""``@gpu``: ZeroGPU's ``spaces.GPU`` on a Hugging Face Space, a no-op everywhere else.

Only the functions doing GPU work are wrapped (inversion, edits); the UI never is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def zero_gpu() -> bool:
    """Whether :func:`gpu` wraps functions here: on a Space (``SPACE_ID`` set) with the
    ``spaces`` package installed."""
    if not os.environ.get("SPACE_ID"):
        return False
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


def gpu(fn: F) -> F:
    """Request a ZeroGPU slot for ``fn`` when running on a Space (``SPACE_ID`` is set)."""
    if not zero_gpu():
        return fn
    import spaces

    duration = int(os.environ.get("IDINVERT_GPU_SECONDS", "120"))
    return spaces.GPU(duration=duration)(fn)
