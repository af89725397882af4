"""Reading and writing latent-code files (``.npy``, float32, never pickled)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from idinvert.core.errors import CodeFormatError


def load_codes(
    path: str | Path, code_shape: tuple[int, int] | None = None, allow_sequences: bool = False
) -> np.ndarray:
    """Load W+ codes from ``.npy``.

    Args:
        path: the file (plain numeric array; object/pickled arrays are refused).
        code_shape: expected ``(L, D)`` of one code; ``None`` skips the check.
        allow_sequences: also accept ``[N, S, L, D]``.

    Returns:
        float32 ``[N, L, D]`` (a single ``[L, D]`` code becomes ``[1, L, D]``), or
        ``[N, S, L, D]`` when ``allow_sequences``.

    Raises:
        CodeFormatError: unreadable, not numeric, wrong rank or shape, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise CodeFormatError(f"{path}: no such code file")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CodeFormatError(
            f"{path}: not a plain numeric .npy array ({exc}); pickled files are refused"
        ) from None
    except (OSError, EOFError) as exc:
        raise CodeFormatError(f"{path}: not a readable .npy file ({exc})") from None
    if isinstance(arr, np.lib.npyio.NpzFile) or not isinstance(arr, np.ndarray):
        raise CodeFormatError(f"{path}: expected a .npy array, got an .npz archive")
    if not np.issubdtype(arr.dtype, np.number):
        raise CodeFormatError(f"{path}: codes must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    ranks = "[L, D], [N, L, D]" + (" or [N, S, L, D]" if allow_sequences else "")
    if arr.ndim not in ((3, 4) if allow_sequences else (3,)):
        raise CodeFormatError(f"{path}: codes must be {ranks}, got shape {list(arr.shape)}")
    if code_shape is not None and tuple(arr.shape[-2:]) != tuple(code_shape):
        raise CodeFormatError(
            f"{path}: codes have per-code shape {list(arr.shape[-2:])} but the model expects "
            f"[{code_shape[0]}, {code_shape[1]}] (L layers × D dims): codes of another model?"
        )
    if arr.size == 0:
        raise CodeFormatError(f"{path}: the file holds no codes (shape {list(arr.shape)})")
    if not np.all(np.isfinite(arr)):
        raise CodeFormatError(f"{path}: codes contain NaN or infinite values")
    return arr.astype(np.float32, copy=False)


def save_codes(codes: np.ndarray, path: str | Path) -> None:
    """Write float32 codes to ``.npy`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, np.asarray(codes, dtype=np.float32), allow_pickle=False)
    os.replace(tmp, path)
