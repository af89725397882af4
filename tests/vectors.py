"""Helpers to rebuild the official-format reference vectors' models (set A, or another set
pointed to by IDINVERT_VECTORS)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from official_layout import VGG16_CONVS

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
"""The official reference material copied into the repository (see its README.md)."""
DEFAULT_VECTORS = REFERENCE / "vectors" / "A"


def vectors_dir() -> Path:
    """Directory of the vector set under test (``IDINVERT_VECTORS`` or the bundled set A)."""
    return Path(os.environ.get("IDINVERT_VECTORS", DEFAULT_VECTORS))


def load(name: str) -> np.ndarray:
    return np.load(vectors_dir() / name, allow_pickle=False)


def config() -> dict:
    return json.loads((vectors_dir() / "config_and_losses.json").read_text())


@lru_cache(maxsize=2)
def random_vgg_state(seed: int) -> dict[str, torch.Tensor]:
    """The vector sets' random VGG16 weights, regenerated with numpy (recipe in their README)."""
    rng = np.random.RandomState(seed)
    state = {}
    for idx, cin, cout in VGG16_CONVS:
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        b = rng.standard_normal((cout,)) * 0.01
        state[f"layer{idx}.weight"] = torch.from_numpy(w.astype(np.float32))
        state[f"layer{idx}.bias"] = torch.from_numpy(b.astype(np.float32))
    return state
