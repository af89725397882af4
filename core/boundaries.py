"""Semantic boundaries (InterFaceGAN): a unit normal per W+ layer plus default layers.

Our format: ``boundaries/<attribute>.safetensors`` holding ``boundary`` float32 ``[1, L, D]``
with metadata ``{"attribute", "layers" (JSON list), "source"}``.

The official files are ``np.save`` of a pickled dict ``{'boundary': [1, L, D], 'meta_data':
{'manipulate_layers': [...]}}``; :func:`load_official_boundary` reads them with a restricted
unpickler that only rebuilds numpy arrays, dicts, lists, strings and numbers.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from idinvert.core.errors import CodeFormatError, ModelFormatError
from idinvert.core.safe_pickle import ARRAY_GLOBALS, UNPICKLE_ERRORS, NumpyOnlyUnpickler

NPY_MAGIC = b"\x93NUMPY"


@dataclass
class Boundary:
    """A layer-wise editing direction.

    Attributes:
        name: attribute name (``"smile"``).
        direction: float32 ``[L, D]`` (one vector per layer; ``[1, D]`` = same for all).
        layers: default layers to edit (indices into L).
        source: provenance text.
    """

    name: str
    direction: np.ndarray
    layers: list[int] = field(default_factory=list)
    source: str = ""

    def layerwise(self, num_layers: int) -> np.ndarray:
        """Direction broadcast to ``[num_layers, D]``."""
        d = self.direction
        if d.shape[0] == 1:
            return np.repeat(d, num_layers, axis=0)
        if d.shape[0] != num_layers:
            raise CodeFormatError(
                f"boundary '{self.name}' has {d.shape[0]} layers but the model has {num_layers}"
            )
        return d

    def check_fits(self, num_layers: int, dim: int) -> None:
        """Check that the direction (``[L, D]`` or ``[1, D]``) and the default layers fit a
        model with ``num_layers`` × ``dim`` codes.

        Raises:
            ValueError: naming the boundary (another model's boundary, layers out of range).
        """
        rows, d = self.direction.shape
        if d != dim or rows not in (1, num_layers):
            raise ValueError(
                f"boundary '{self.name}' has shape [{rows}, {d}] but this model needs "
                f"[{num_layers}, {dim}] (one direction per layer) or [1, {dim}]: a boundary of "
                "another model?"
            )
        bad = [i for i in self.layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(
                f"boundary '{self.name}' default layers {bad} are outside 0..{num_layers - 1}"
            )


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in (
        "latin1",
        "latin-1",
        "iso-8859-1",
    ):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin-1 bytes")
    return text.encode("latin-1")


class _ArrayOnlyUnpickler(NumpyOnlyUnpickler):
    """Numpy arrays, numpy scalars and plain containers.

    Protocol-2 pickles (the official files) store bytes as ``_codecs.encode(str, 'latin1')``;
    that global is mapped to a latin-1-only function, no other codec is reachable.
    """

    allowed = ARRAY_GLOBALS | {("numpy._core.multiarray", "scalar")}
    substitutes = {("_codecs", "encode"): _latin1_bytes}


def _check_plain(obj: object, where: str) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ModelFormatError(f"{where}: non-string key {k!r}")
            _check_plain(v, where)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, where)
    elif not isinstance(obj, (np.ndarray, np.generic, str, int, float, bool, type(None))):
        raise ModelFormatError(f"{where}: unexpected object of type {type(obj).__name__}")


def read_npy_restricted(path: str | Path) -> object:
    """Read a ``.npy`` file; object arrays are unpickled with the restricted unpickler.

    Returns:
        A numeric ``np.ndarray`` or, for a pickled 0-d object array, the object it holds.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.startswith(NPY_MAGIC):
        raise ModelFormatError(f"{path}: not a .npy file")
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        _shape, _fortran, dtype = read_header(buf)
    except ValueError as exc:
        raise ModelFormatError(f"{path}: malformed .npy header ({exc})") from None
    if dtype.hasobject:
        try:
            obj = _ArrayOnlyUnpickler(buf).load()
        except UNPICKLE_ERRORS as exc:
            raise ModelFormatError(f"{path}: refused ({exc})") from None
        if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
            obj = obj[()]
        _check_plain(obj, str(path))
        return obj
    buf.seek(0)
    try:
        return np.load(buf, allow_pickle=False)
    except ValueError as exc:
        raise ModelFormatError(f"{path}: unreadable .npy data ({exc})") from None


def load_official_boundary(path: str | Path, name: str | None = None) -> Boundary:
    """Read an official boundary ``.npy`` (pickled dict or plain ``[1, L, D]`` array)."""
    path = Path(path)
    obj = read_npy_restricted(path)
    layers: list[int] = []
    if isinstance(obj, dict):
        if "boundary" not in obj:
            raise ModelFormatError(f"{path}: dict without a 'boundary' entry")
        meta = obj.get("meta_data") or {}
        raw_layers = meta.get("manipulate_layers") if isinstance(meta, dict) else None
        if raw_layers is not None:
            layers = parse_layers(raw_layers)
        arr = np.asarray(obj["boundary"])
    else:
        arr = np.asarray(obj)
    return Boundary(
        name or path.stem, _as_direction(arr, str(path)), layers, f"official {path.name}"
    )


def _as_direction(arr: np.ndarray, where: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number):
        raise ModelFormatError(f"{where}: boundary must be numeric, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ModelFormatError(
            f"{where}: boundary must be [1, L, D], [L, D] or [D], got {list(arr.shape)}"
        )
    if not np.all(np.isfinite(arr)):
        raise ModelFormatError(f"{where}: boundary has NaN or infinite values")
    return arr.astype(np.float32)


def parse_layers(spec: object, num_layers: int | None = None) -> list[int]:
    """Layer indices from an int, a list, or a string like ``"0-5"``, ``"0,2,4"``, ``"all"``.

    Returns a sorted list without duplicates; ``""``/``None``/``"all"`` means all layers
    (requires ``num_layers``).

    Raises:
        ValueError: malformed spec or an index outside ``0..num_layers-1``.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        if num_layers is None:
            return []
        return list(range(num_layers))
    if isinstance(spec, (int, np.integer)):
        items: list[int] = [int(spec)]
    elif isinstance(spec, str):
        items = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                try:
                    lo, hi = int(a), int(b)
                except ValueError:
                    raise ValueError(
                        f"invalid layer range {part!r}; use e.g. '0-5' or '0,2,4'"
                    ) from None
                if hi < lo:
                    raise ValueError(f"invalid layer range {part!r}: end before start")
                items.extend(range(lo, hi + 1))
            else:
                try:
                    items.append(int(part))
                except ValueError:
                    raise ValueError(
                        f"invalid layer index {part!r}; use e.g. '0-5' or '0,2,4'"
                    ) from None
    else:
        try:
            items = [int(v) for v in spec]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"invalid layers {spec!r}") from None
    layers = sorted(set(items))
    if num_layers is not None:
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"layer indices {bad} out of range 0..{num_layers - 1}")
    elif any(i < 0 for i in layers):
        raise ValueError(f"layer indices must be >= 0, got {layers}")
    return layers


def save_boundary(boundary: Boundary, path: str | Path) -> None:
    """Write our safetensors boundary format."""
    meta = {
        "attribute": boundary.name,
        "layers": json.dumps(boundary.layers),
        "source": boundary.source,
    }
    save_file({"boundary": boundary.direction[None].astype(np.float32)}, str(path), metadata=meta)


def load_boundary(path: str | Path) -> Boundary:
    """Read a boundary: our ``.safetensors`` format or an official ``.npy`` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such boundary file")
    if path.suffix == ".npy":
        return load_official_boundary(path)
    try:
        arrays = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: unreadable boundary file ({exc})") from None
    if "boundary" not in arrays:
        raise ModelFormatError(f"{path}: no 'boundary' tensor")
    try:
        layers = parse_layers(json.loads(meta.get("layers", "[]")))
    except (json.JSONDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: bad 'layers' metadata ({exc})") from None
    return Boundary(
        meta.get("attribute", path.stem),
        _as_direction(arrays["boundary"], str(path)),
        layers,
        meta.get("source", ""),
    )


def find_boundary(ref: str | Path, model_dir: str | Path | None = None) -> Boundary:
    """A boundary by name (a file in ``model_dir``'s ``boundaries/``) or by file path.

    Raises:
        ModelFormatError: ``ref`` is neither (the message lists the model's boundaries), or
            the file is unreadable.
    """
    text = str(ref).strip()
    known = model_boundaries(model_dir)
    if text in known:
        return load_boundary(known[text])
    path = Path(text).expanduser()
    if not text or not path.is_file():
        raise ModelFormatError(
            f"{text!r} is neither a boundary of this model (available: "
            f"{', '.join(sorted(known)) or 'none'}) nor a boundary file (.npy official format "
            "or .safetensors)"
        )
    return load_boundary(path)


def model_boundaries(model_dir: str | Path | None) -> dict[str, Path]:
    """Attribute name → boundary file inside a model directory's ``boundaries/`` folder."""
    if model_dir is None:
        return {}
    folder = Path(model_dir) / "boundaries"
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))}
