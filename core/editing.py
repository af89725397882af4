"""Edit math on W+ codes (after the official ``utils/editor.py`` and ``diffuse.py``).

Interpolation, manipulation, style mixing and semantic diffusion's mask and stitching are
pure numpy functions; :func:`semantic_diffusion` composes the latter with the core's masked
inversion (torch, imported when called). Every function takes and returns plain arrays with
the shapes stated in its docstring, checks its arguments and raises ``ValueError`` whose
message starts with the offending parameter's name. The arithmetic follows the official code
operation for operation (including numpy's float64 promotion where the official functions
promote), so results match the reference vectors to float precision. The built-in plugins
in ``idinvert.plugins`` are thin shells around these.

Shapes: ``N`` samples, ``S`` steps, ``L`` layers, ``D`` code dimension; ``R`` resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from idinvert.core.inversion import InversionSettings, StepCallback
    from idinvert.core.modeldir import ModelBundle

__all__ = [
    "DiffusionResult",
    "interpolate",
    "layerwise_strength",
    "manipulate",
    "mix_style",
    "rect_mask",
    "semantic_diffusion",
    "stitch",
]


def _codes(name: str, codes: np.ndarray, rank: int = 3) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != rank or not np.issubdtype(arr.dtype, np.floating):
        want = "[N, L, D]" if rank == 3 else f"rank {rank}"
        raise ValueError(
            f"{name}: expected floating-point codes {want}, got {arr.dtype} {list(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: no codes (shape {list(arr.shape)})")
    return arr


def _same_model(
    first: str, a: np.ndarray, second: str, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``a`` and ``b`` (each ``[N, L, D]``) with the same ``[L, D]``; the error names
    ``second``."""
    a, b = _codes(first, a), _codes(second, b)
    if b.shape[1:] != a.shape[1:]:
        raise ValueError(
            f"{second}: per-code shape {list(b.shape[1:])} differs from {first} "
            f"{list(a.shape[1:])}: codes of another model?"
        )
    return a, b


def _steps(name: str, steps: int, minimum: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {steps!r}")
    return int(steps)


def _layers(name: str, layers: Sequence[int] | None, num_layers: int) -> list[int]:
    if layers is None or len(layers) == 0:
        return list(range(num_layers))
    out = sorted({int(i) for i in layers})
    bad = [i for i in out if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"{name}: layer indices {bad} out of range 0..{num_layers - 1}")
    return out


def interpolate(src: np.ndarray, dst: np.ndarray, steps: int) -> np.ndarray:
    """Linear interpolation from each source code to its destination, endpoints included.

    ``out[n, s] = src[n] + t_s · (dst[n] − src[n])`` with ``t = linspace(0, 1, steps)``.

    Args:
        src: ``[N, L, D]`` start codes.
        dst: ``[N, L, D]`` end codes (paired with ``src``).
        steps: number of codes per path, >= 2 (``out[:, 0] = src``, ``out[:, -1] = dst``).

    Returns:
        float64 ``[N, steps, L, D]`` (numpy promotion with the float64 ``t``, as official).
    """
    src, dst = _same_model("src", src, "dst", dst)
    if dst.shape[0] != src.shape[0]:
        raise ValueError(
            f"dst: {dst.shape[0]} codes but src has {src.shape[0]}; they are paired one to one"
        )
    steps = _steps("steps", steps, 2)
    a = src[:, np.newaxis]
    b = dst[:, np.newaxis]
    t = np.linspace(0.0, 1.0, steps).reshape(1, steps, 1, 1)
    return a + t * (b - a)


def layerwise_strength(num_layers: int, psi: float, trunc_layers: int) -> np.ndarray:
    """Per-layer manipulation strength that compensates the truncation trick.

    Layers ``0 .. trunc_layers−1`` were truncated (``w ← ψ·w + (1−ψ)·w_avg``), so a move there
    is scaled by ``ψ``; the remaining layers get 1.

    Args:
        num_layers: L.
        psi: truncation ψ in (0, 1].
        trunc_layers: number of truncated leading layers, 0..L.

    Returns:
        float64 ``[L]``: ``[psi]*trunc_layers + [1.0]*(L − trunc_layers)``.
    """
    _steps("num_layers", num_layers, 1)
    if not 0 <= trunc_layers <= num_layers:
        raise ValueError(f"trunc_layers: must be in 0..{num_layers}, got {trunc_layers}")
    if not 0 < psi <= 1:
        raise ValueError(f"psi: must be in (0, 1], got {psi}")
    strength = np.ones(num_layers, dtype=np.float64)
    strength[:trunc_layers] = float(psi)
    return strength


def manipulate(
    codes: np.ndarray,
    boundary: np.ndarray,
    start: float = -3.0,
    end: float = 3.0,
    steps: int = 7,
    layers: Sequence[int] | None = None,
    strength: float | Sequence[float] | np.ndarray = 1.0,
) -> np.ndarray:
    """Move codes along a (layer-wise) boundary normal.

    ``out[n, s, l] = codes[n, l] + d_s · strength[l] · boundary[l]`` for ``l`` in ``layers``,
    else ``codes[n, l]``; ``d = linspace(start, end, steps)``.

    Args:
        codes: ``[N, L, D]``.
        boundary: ``[L, D]`` or ``[1, L, D]`` (one unit normal per layer), or ``[D]`` /
            ``[1, D]`` (the same normal for every layer).
        start: distance of the first code.
        end: distance of the last code.
        steps: number of codes per sample, >= 1.
        layers: layer indices to move (``None``/empty = all layers).
        strength: a number, or ``[L]`` per-layer factors (see :func:`layerwise_strength`).

    Returns:
        float64 ``[N, steps, L, D]`` (numpy promotion, as official).
    """
    x = _codes("codes", codes)
    _, num_layers, dim = x.shape
    b = np.asarray(boundary)
    if b.ndim == 3 and b.shape[0] == 1:
        b = b[0]
    if b.ndim == 1:
        b = b[np.newaxis]
    if b.ndim != 2 or b.shape[1] != dim or b.shape[0] not in (1, num_layers):
        raise ValueError(
            f"boundary: shape {list(np.shape(boundary))} does not fit codes "
            f"[N, {num_layers}, {dim}]; "
            f"expected [{num_layers}, {dim}], [1, {num_layers}, {dim}] or [{dim}]"
        )
    if b.shape[0] == 1:
        b = np.tile(b, (num_layers, 1))
    if not np.all(np.isfinite(b)):
        raise ValueError("boundary: contains NaN or infinite values")
    layer_ids = _layers("layers", layers, num_layers)
    steps = _steps("steps", steps, 1)
    for name, value in (("start", start), ("end", end)):
        if not np.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, got {value}")
    if np.ndim(strength) == 0:
        s = np.full(num_layers, float(strength))
    else:
        s = np.asarray(strength, dtype=np.float64).reshape(-1)
        if s.size != num_layers:
            raise ValueError(f"strength: {s.size} values for {num_layers} layers")
    b = b * s.reshape(num_layers, 1)
    x = x[:, np.newaxis]
    b = b[np.newaxis, np.newaxis]
    d = np.linspace(start, end, steps).reshape(1, steps, 1, 1)
    moved = x + d * b
    out = np.repeat(x, steps, axis=1).astype(moved.dtype)
    out[:, :, layer_ids] = moved[:, :, layer_ids]
    return out


def mix_style(
    style: np.ndarray, content: np.ndarray, layers: Sequence[int] | None = None
) -> np.ndarray:
    """Style mixing: take ``layers`` from each style code, the rest from each content code.

    ``out[s, c, l] = style[s, l]`` if ``l`` in ``layers`` else ``content[c, l]``.

    Args:
        style: ``[S, L, D]``.
        content: ``[C, L, D]``.
        layers: layer indices copied from the style codes (``None``/empty = all).

    Returns:
        ``[S, C, L, D]`` in the inputs' common dtype.
    """
    style, content = _same_model("style", style, "content", content)
    num_layers = style.shape[1]
    layer_ids = _layers("layers", layers, num_layers)
    s = np.broadcast_to(style[:, np.newaxis], (style.shape[0], content.shape[0], *style.shape[1:]))
    c = np.broadcast_to(content[np.newaxis], s.shape)
    from_style = np.zeros(s.shape, dtype=bool)
    from_style[:, :, layer_ids] = True
    return np.where(from_style, s, c)


def rect_mask(
    resolution: int, center_x: int, center_y: int, crop_x: int, crop_y: int
) -> np.ndarray:
    """The diffusion crop mask: float32 ``[1, 3, R, R]``, 1 on rows ``cy − crop_y//2`` …
    (``crop_y`` rows) and columns ``cx − crop_x//2`` … (``crop_x`` columns), else 0.

    Raises:
        ValueError: naming ``crop_x``/``crop_y`` (empty or larger than the image) or
            ``center_x``/``center_y`` (the crop sticks out of the image).
    """
    for name, size in (("crop_x", crop_x), ("crop_y", crop_y)):
        if not 1 <= size <= resolution:
            raise ValueError(f"{name}: crop size must be in 1..{resolution}, got {size}")
    left, top = center_x - crop_x // 2, center_y - crop_y // 2
    x_range = f"{crop_x // 2}..{resolution - crop_x + crop_x // 2}"
    y_range = f"{crop_y // 2}..{resolution - crop_y + crop_y // 2}"
    if left < 0 or left + crop_x > resolution:
        raise ValueError(
            f"center_x: the crop covers columns {left}..{left + crop_x - 1}, outside the "
            f"{resolution}×{resolution} image (use center_x in {x_range})"
        )
    if top < 0 or top + crop_y > resolution:
        raise ValueError(
            f"center_y: the crop covers rows {top}..{top + crop_y - 1}, outside the "
            f"{resolution}×{resolution} image (use center_y in {y_range})"
        )
    mask = np.zeros((1, 3, resolution, resolution), dtype=np.float32)
    mask[:, :, top : top + crop_y, left : left + crop_x] = 1.0
    return mask


def stitch(targets: np.ndarray, contexts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paste the masked region of every target into every context.

    ``out[t·C + c] = targets[t] · mask + contexts[c] · (1 − mask)`` (target-major, like the
    official ``diffuse.py``).

    Args:
        targets: float ``[T, 3, R, R]`` in [−1, 1].
        contexts: float ``[C, 3, R, R]`` in [−1, 1].
        mask: ``[1, 3, R, R]`` or ``[1, 1, R, R]`` in {0, 1} (see :func:`rect_mask`).

    Returns:
        ``[T·C, 3, R, R]`` in the inputs' dtype.
    """
    targets = np.asarray(targets)
    contexts = np.asarray(contexts)
    if targets.ndim != 4 or targets.shape[1] != 3:
        raise ValueError(f"targets: expected [T, 3, R, R], got {list(targets.shape)}")
    if contexts.ndim != 4 or contexts.shape[1:] != targets.shape[1:]:
        raise ValueError(
            f"contexts: expected [C, {', '.join(map(str, targets.shape[1:]))}], "
            f"got {list(contexts.shape)}"
        )
    mask = np.asarray(mask, dtype=targets.dtype)
    if mask.ndim != 4 or mask.shape[0] != 1 or mask.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"mask: expected [1, 1|3, R, R], got {list(mask.shape)}")
    out = targets[:, np.newaxis] * mask[np.newaxis] + contexts[np.newaxis] * (1 - mask[np.newaxis])
    return out.reshape(-1, *targets.shape[1:])


@dataclass
class DiffusionResult:
    """Output of :func:`semantic_diffusion`.

    Attributes:
        codes: float32 ``[T·C, L, D]`` final codes (target-major).
        init_codes: float32 ``[T·C, L, D]`` encoder codes of the stitched inputs.
        stitched: float32 ``[T·C, 3, R, R]`` stitched inputs in [−1, 1].
        history: loss name → ``[steps, T·C]``.
    """

    codes: np.ndarray
    init_codes: np.ndarray
    stitched: np.ndarray
    history: dict[str, np.ndarray]


def semantic_diffusion(
    bundle: ModelBundle,
    targets: np.ndarray,
    contexts: np.ndarray,
    *,
    center_x: int,
    center_y: int,
    crop_x: int,
    crop_y: int,
    settings: InversionSettings,
    batch_size: int | None = None,
    callback: StepCallback | None = None,
) -> DiffusionResult:
    """Diffuse every target's crop into every context (official ``diffuse.py``).

    For every target × context pair the crop is pasted (:func:`stitch`), ``E(x)`` is the start
    code, and the code is optimised so that ``G(z)`` reproduces only the crop (masked pixel +
    perceptual loss; the official run has no domain term): the generator fills in the rest.

    Args:
        bundle: the model (needs a perceptual net when ``settings.perceptual_weight > 0``).
        targets: float ``[T, 3, R, R]`` in [−1, 1].
        contexts: float ``[C, 3, R, R]`` in [−1, 1].
        center_x, center_y: crop centre (column, row) in pixels.
        crop_x, crop_y: crop width and height in pixels.
        settings: optimisation settings (the official run uses ``domain_weight=0``).
        batch_size: pairs optimised at once (``None``: all).
        callback: per-step callback of :func:`idinvert.core.inversion.invert`.

    Raises:
        ValueError: naming ``center_x``/``center_y``/``crop_x``/``crop_y`` when the crop does
            not fit in the image.
    """
    import torch

    from idinvert.core.inversion import invert

    mask = rect_mask(bundle.resolution, center_x, center_y, crop_x, crop_y)
    stitched = stitch(np.asarray(targets, np.float32), np.asarray(contexts, np.float32), mask)
    result = invert(
        bundle,
        torch.from_numpy(stitched),
        settings,
        mask=torch.from_numpy(mask),
        batch_size=batch_size,
        callback=callback,
    )
    return DiffusionResult(
        result.codes.numpy(), result.init_codes.numpy(), stitched, result.history
    )
