"""The layer order of the packages (``[tool.importlinter]`` in pyproject.toml), checked with
import-linter on the modules that make up the wheel: cli → demo → training → hub | plugins →
core, no cycles between packages, and a core that needs no UI or Hub client."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "plugins", "hub", "demo", "training", "cli")


def _lint_imports() -> Path:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.is_file():
        pytest.fail("import-linter is not installed (it is in the 'test' extra)")
    return exe


def test_import_contracts_hold(tmp_path: Path) -> None:
    # grimp walks a package on disk; the editable install maps folders through a path hook,
    # so the checked tree is the wheel's layout rebuilt from the source files.
    pkg = tmp_path / "idinvert"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for folder in PACKAGES:
        shutil.copytree(
            ROOT / folder,
            pkg / folder,
            ignore=lambda d, names: [
                n for n in names if n == "contrib" or (not n.endswith(".py") and "." in n)
            ],
        )
    out = subprocess.run(
        [str(_lint_imports()), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def test_a_broken_layer_is_caught(tmp_path: Path) -> None:
    """The check can fail: a core module importing the Hub client breaks the contracts."""
    pkg = tmp_path / "idinvert"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for folder in PACKAGES:
        (pkg / folder).mkdir()
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "core" / "bad.py").write_text("import idinvert.hub\nimport huggingface_hub\n")
    out = subprocess.run(
        [str(_lint_imports()), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "idinvert.core.bad -> idinvert.hub" in out.stdout
    assert "2 broken" in out.stdout
