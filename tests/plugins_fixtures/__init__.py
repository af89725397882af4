"""Test helpers and fixture plugins for the plugin/edit tests.

``site/`` is a directory to put on ``sys.path``: it holds small plugin modules *and* their
``*.dist-info`` folders (METADATA + entry_points.txt), so ``importlib.metadata`` discovers them
through the real ``idinvert`` entry-point group, exactly like installed distributions:

* ``fixture-good`` → ``idinvert_fixture_good``: a working operation ``scale-codes`` using
  choice/string/float/bool parameters;
* ``fixture-broken-import`` → raises at import;
* ``fixture-raises`` → raises inside ``register_edit_operations``;
* ``fixture-duplicate`` → registers ``interpolate`` again (a name conflict);
* ``fixture-typo`` → implements a misspelled hook (caught by ``pm.check_pending()``);
* ``fixture-bad-command`` → registers a command named ``invert`` (clashes with a built-in).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

SITE = Path(__file__).resolve().parent / "site"
FIXTURE_PLUGINS = (
    "fixture-good",
    "fixture-broken-import",
    "fixture-raises",
    "fixture-duplicate",
    "fixture-typo",
    "fixture-bad-command",
)


def run_cli(args: list[object], capsys: Any) -> tuple[int, str, str]:
    """Run ``idinvert ARGS`` in-process like the console script → (exit code, stdout, stderr)."""
    from idinvert.cli.main import main

    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def launch_demo(
    model_dir: Path | None, limits: Any = None, own_examples: bool = False
) -> tuple[Any, str]:
    """Build the demo on ``model_dir`` (CPU; no examples, or with ``own_examples`` each model's
    own) and launch it on a free local port without blocking → ``(blocks, url)``; the caller
    closes ``blocks``."""
    from conftest import free_port

    from idinvert.demo.app import build_demo, launch_kwargs

    ref = str(model_dir) if model_dir is not None else None
    blocks = build_demo(ref, "cpu", limits, examples=None if own_examples else [])
    port = free_port()
    blocks.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_kwargs(limits),
    )
    return blocks, f"http://127.0.0.1:{port}/"


def save_second_model(root: Path) -> Path:
    """A model unlike ``demo_model_dir``'s: 16 px (6 layers), one boundary ``tilt`` →
    its directory (for the several-models tests)."""
    import numpy as np
    from conftest import build_tiny_bundle

    from idinvert.core.boundaries import Boundary, save_boundary
    from idinvert.core.modeldir import save_model_dir

    bundle = build_tiny_bundle(resolution=16, seed=3)
    model = save_model_dir(bundle, root / "other16")
    (model / "boundaries").mkdir()
    v = np.random.default_rng(1).standard_normal(bundle.code_shape).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    save_boundary(Boundary("tilt", v, [0, 1]), model / "boundaries" / "tilt.safetensors")
    return model


def random_photos(root: Path, sizes: dict[str, tuple[int, int]], seed: int) -> dict[str, Path]:
    """Random-noise PNGs ``root/NAME.png`` of ``(height, width)`` each → name → path (distinct
    contents: Gradio caches by content)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = {}
    for name, (h, w) in sizes.items():
        paths[name] = root / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[name])
    return paths


def purge_fixture_modules() -> None:
    """Forget imported fixture plugin modules (so import failures happen again)."""
    for name in list(sys.modules):
        if name.startswith("idinvert_fixture_"):
            del sys.modules[name]
