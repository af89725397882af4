"""Data splits of the procedural face domain and in-memory rendering of labelled faces.

Face ``i`` of data set ``s`` is drawn from ``SeedSequence([s, i])``
(:func:`idinvert.training.faces.face_rng`), so two data sets with different seeds share no
face. The split rule is therefore on the *data set seed*:

* ``0 <= s < TRAIN_SEED_LIMIT`` (2²⁹): training streams — the GAN (``--seed``), the encoder
  (``--data-seed``, by default the GAN's) and the attribute classifier (``--data-seed``);
* ``VALIDATION_SEED_BASE + s``: validation of a run trained on stream ``s`` (the classifier's
  held-out accuracy, the encoder's sample grids and ``val_mse``);
* ``EVAL_SEED_BASE + S`` (2³⁰ + S): ``idinvert eval --seed S``. No training command accepts a
  seed at or above :data:`TRAIN_SEED_LIMIT`, so evaluation images are never trained on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

DEFAULT_DATA = "idinvert.training.faces:iter_faces"
TRAIN_SEED_LIMIT = 1 << 29
VALIDATION_SEED_BASE = 1 << 29
EVAL_SEED_BASE = 1 << 30

FaceSource = Callable[..., Iterator[tuple[np.ndarray, dict[str, int]]]]


def check_train_seed(seed: int, what: str = "data seed") -> int:
    """Return ``seed`` if it is a training stream, else raise ``ValueError``."""
    if not 0 <= int(seed) < TRAIN_SEED_LIMIT:
        raise ValueError(
            f"{what} must be in 0..{TRAIN_SEED_LIMIT - 1} (larger seeds are reserved for "
            f"validation and evaluation), got {seed}"
        )
    return int(seed)


def validation_seed(train_seed: int) -> int:
    """Data set seed of the validation split of training stream ``train_seed``."""
    return VALIDATION_SEED_BASE + check_train_seed(train_seed)


def eval_seed(seed: int) -> int:
    """Data set seed of ``idinvert eval --seed seed`` (disjoint from every training stream)."""
    if not 0 <= int(seed) < (1 << 30):
        raise ValueError(f"eval seed must be in 0..{(1 << 30) - 1}, got {seed}")
    return EVAL_SEED_BASE + int(seed)


def resolve_data_fn(spec: str) -> FaceSource:
    """Import ``"package.module:function"`` (an ``iter_faces``-compatible renderer)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"cannot import the face renderer {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RuntimeError(f"{module_name} has no function {attr!r}") from None


def _render_chunk(
    spec: str, seed: int, start: int, count: int, resolution: int
) -> tuple[np.ndarray, list[dict[str, int]]]:
    fn = resolve_data_fn(spec)
    images, labels = [], []
    for img, lab in fn(seed, start, count, resolution):
        images.append(img)
        labels.append(dict(lab))
    return np.stack(images), labels


def render_faces(
    data: str,
    seed: int,
    start: int,
    count: int,
    resolution: int,
    workers: int = 0,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Render faces ``start .. start + count - 1`` of data set ``seed`` into memory.

    Args:
        data: renderer as ``"module:function"``.
        seed: data set seed (see the module docstring for the split rule).
        start, count: index range.
        resolution: image side R.
        workers: rendering processes (0 = in this process). They are forked where the platform
            allows (like the GAN trainer's DataLoader workers: rendering is numpy/Pillow only),
            else spawned (then the renderer must be importable by name).
        chunk: faces per worker task.

    Returns:
        ``(images uint8 [N, R, R, 3], labels uint8 [N, A], attribute names)`` with the
        attributes in the renderer's label order.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    spans = [(s, min(chunk, start + count - s)) for s in range(start, start + count, chunk)]
    if workers > 0 and len(spans) > 1:
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
            futures = [pool.submit(_render_chunk, data, seed, s, n, resolution) for s, n in spans]
            parts = [f.result() for f in futures]
    else:
        parts = [_render_chunk(data, seed, s, n, resolution) for s, n in spans]
    images = np.concatenate([p[0] for p in parts])
    dicts = [lab for p in parts for lab in p[1]]
    names = tuple(dicts[0].keys())
    labels = np.array([[d[a] for a in names] for d in dicts], dtype=np.uint8)
    return images, labels, names


def to_float_images(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, R, R, 3]`` → float32 tensor ``[N, 3, R, R]`` in [−1, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().mul(2.0 / 255.0).sub(1.0)
