"""Example images for the demo gallery, made lazily on first use and cached on disk."""

from __future__ import annotations

import os
from pathlib import Path

from idinvert.core.images import save_png
from idinvert.core.modeldir import ModelBundle

#: Seed stream reserved for demo examples (never used for training or evaluation).
EXAMPLE_SEED = 7_000_001


def _cache_dir(bundle: ModelBundle) -> Path:
    root = Path(os.environ.get("IDINVERT_CACHE", Path.home() / ".cache" / "idinvert"))
    return root / "demo-examples" / f"{bundle.config.name or 'model'}-{bundle.resolution}"


def example_images(bundle: ModelBundle, count: int = 6) -> list[str]:
    """Paths of ``count`` example photos of the model's domain.

    For the bundled synthetic-faces model these are held-out renders of the procedural face
    renderer (real "photos" of its domain, not generator samples); for other models, the
    official example faces when the model is a face model and they are available, else none.
    """
    folder = _cache_dir(bundle)
    paths = [folder / f"example_{i}.png" for i in range(count)]
    if all(p.is_file() for p in paths):
        return [str(p) for p in paths]
    dataset = str(bundle.config.provenance.get("dataset", ""))
    if "synthetic-faces" not in dataset:
        return []
    from idinvert.training.faces import iter_faces

    folder.mkdir(parents=True, exist_ok=True)
    for path, (image, _labels) in zip(
        paths, iter_faces(EXAMPLE_SEED, 0, count, bundle.resolution), strict=True
    ):
        save_png(image, path)
    return [str(p) for p in paths]
