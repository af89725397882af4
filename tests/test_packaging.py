"""The wheel holds every module of the four folders (the ``package-dir`` trap: a nested
subpackage missing from the list is silently dropped), the bundled model's files, and not the
separately distributed contrib plugins."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "core": "idinvert/core",
    "plugins": "idinvert/plugins",
    "hub": "idinvert/hub",
    "demo": "idinvert/demo",
    "training": "idinvert/training",
    "cli": "idinvert/cli",
}
NOT_SHIPPED = ("plugins/contrib/", "demo/space/")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("idinvert-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_every_module_is_in_the_wheel(wheel_names):
    missing = []
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(NOT_SHIPPED) or "__pycache__" in rel:
                continue
            target = package + "/" + path.relative_to(ROOT / folder).as_posix()
            if target not in wheel_names:
                missing.append(target)
    assert not missing, f"modules missing from the wheel: {missing}"


def test_contrib_plugins_are_separate_distributions(wheel_names):
    assert not [n for n in wheel_names if "contrib" in n or "idinvert_sefa" in n]


def test_bundled_models_ship_in_the_wheel(wheel_names):
    bundled = ROOT / "hub" / "bundled"
    for path in bundled.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".md"):
            rel = "idinvert/hub/" + path.relative_to(ROOT / "hub").as_posix()
            assert rel in wheel_names, rel


def test_console_script_entry_point(wheel_names):
    assert any(n.endswith("entry_points.txt") for n in wheel_names)
