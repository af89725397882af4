"""``@gpu``: ZeroGPU's ``spaces.GPU`` on a Hugging Face Space, a no-op everywhere else.

Only the functions doing GPU work are wrapped (inversion, edits); the UI never is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def gpu(fn: F) -> F:
    """Request a ZeroGPU slot for ``fn`` when running on a Space (``SPACE_ID`` is set)."""
    if not os.environ.get("SPACE_ID"):
        return fn
    try:
        import spaces
    except ImportError:
        return fn
    duration = int(os.environ.get("IDINVERT_GPU_SECONDS", "120"))
    return spaces.GPU(duration=duration)(fn)
