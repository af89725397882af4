"""The bundled default model: offline, small, complete, and the default everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

BUNDLED = Path(__file__).resolve().parents[1] / "hub" / "bundled" / "faces64"
pytestmark = pytest.mark.skipif(
    not (BUNDLED / "config.json").is_file(), reason="the bundled model is not in this checkout yet"
)


def test_weights_fit_the_git_budget():
    total = sum(p.stat().st_size for p in BUNDLED.rglob("*.safetensors"))
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MiB of weights"
    assert not list(BUNDLED.rglob("*.pth")) and not list(BUNDLED.rglob("*.pt"))


def test_card_config_and_boundaries():
    config = json.loads((BUNDLED / "config.json").read_text())
    assert config["generator"]["resolution"] >= 64
    assert (BUNDLED / "README.md").read_text().strip()
    boundaries = sorted(p.stem for p in (BUNDLED / "boundaries").glob("*.safetensors"))
    assert len(boundaries) >= 6, boundaries


def test_card_shows_the_generator_figures_and_a_small_sample_grid():
    gen = json.loads((BUNDLED / "eval.json").read_text())["generator"]
    assert gen["n_samples"] >= 5000 and gen["n_renders"] >= 5000 and gen["psi"] == 1.0
    assert gen["kid"] > 0 and gen["fid"] > 0 and "relu5_3" in gen["features"]["layer"]
    card = (BUNDLED / "README.md").read_text()
    assert f"KID **{gen['kid']:.5f}**" in card and "![samples](samples.png)" in card
    grid = BUNDLED / "samples.png"
    assert grid.stat().st_size < 400_000
    size = json.loads((BUNDLED / "config.json").read_text())["generator"]["resolution"]
    assert Image.open(grid).size == (8 * size, 4 * size)


def test_default_model_loads_offline_without_network(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    code = (
        "from idinvert.hub.api import load_model; b = load_model(None, 'cpu'); "
        "print(b.config.name, b.resolution)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "faces64"


def test_model_option_may_be_omitted(capsys, tmp_path):
    res = run_cli(capsys, "sample", "--n", "2", "--seed", "1", "--out", tmp_path / "s")
    assert res.code == 0, res.err
    photo = tmp_path / "s" / "000000.png"
    Image.open(photo).convert("RGB").resize((80, 80)).save(tmp_path / "photo.png")
    res = run_cli(capsys, "invert", tmp_path / "photo.png", "--out", tmp_path / "i", "--steps", "2")
    assert res.code == 0, res.err
    assert np.load(tmp_path / "i" / "codes.npy").shape[0] == 1
