"""Closed-form factorization (SeFa) as pure numpy functions.

Shapes: ``D`` code dimension, ``C_l`` channels of layer ``l``, ``k`` directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Key of a layer's style-modulation weight ``[2 C_l, D]`` in the generator state dict.
STYLE_WEIGHT_KEY = "synthesis.layer{index}.epilogue.style_mod.dense.fc.weight"


def style_weights(generator: Any, layers: Sequence[int]) -> list[np.ndarray]:
    """The style-modulation weights of ``layers``: float64 ``[2 C_l, D]`` each.

    Args:
        generator: an :class:`idinvert.core.models.generator.Generator`.
        layers: layer indices in ``0 .. L−1``.
    """
    state = generator.state_dict()
    out = []
    for i in layers:
        key = STYLE_WEIGHT_KEY.format(index=i)
        if key not in state:
            raise ValueError(f"layers: the generator has no style weight for layer {i} ({key})")
        out.append(state[key].detach().cpu().double().numpy())
    return out


def closed_form_factorization(
    weights: Sequence[np.ndarray], top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` semantic directions of a generator from its style weights.

    ``A = [W_l / ‖row‖]`` stacked over layers, ``[Σ 2C_l, D]`` with unit rows (as the official
    ``factorize_weight``); the directions are the eigenvectors of ``AᵀA`` (``[D, D]``) with the
    largest eigenvalues.

    Args:
        weights: ``[2 C_l, D]`` per selected layer (same ``D``).
        top_k: number of directions, ``1 .. D``.

    Returns:
        ``directions`` float32 ``[k, D]`` (unit rows, sign fixed so the largest-magnitude
        entry is positive) and ``eigenvalues`` float64 ``[k]`` (decreasing).
    """
    if not weights:
        raise ValueError("layers: select at least one layer")
    dims = {w.shape[1] for w in weights}
    if len(dims) != 1 or any(w.ndim != 2 for w in weights):
        raise ValueError(
            f"weights: expected [2C, D] matrices with one D, got {[list(w.shape) for w in weights]}"
        )
    dim = dims.pop()
    if not 1 <= top_k <= dim:
        raise ValueError(f"top_k: must be in 1..{dim}, got {top_k}")
    a = np.concatenate([np.asarray(w, dtype=np.float64) for w in weights], axis=0)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    values, vectors = np.linalg.eigh(a.T @ a)
    order = np.argsort(values)[::-1][:top_k]
    directions = vectors[:, order].T
    pivot = np.abs(directions).argmax(axis=1)
    directions = directions * np.sign(directions[np.arange(top_k), pivot])[:, None]
    return directions.astype(np.float32), values[order]
