"""``idinvert invert / render / sample / convert`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import vectors as V
from cli_helpers import run_cli
from PIL import Image


@pytest.fixture
def face_png(tmp_path):
    path = tmp_path / "face one.png"
    Image.fromarray(V.load("target_uint8.npy")).resize((50, 70)).save(path)
    return path


def test_help_lists_core_commands():
    out = subprocess.run(
        [sys.executable, "-m", "idinvert.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("invert", "render", "sample", "convert"):
        assert name in out


def test_invert_writes_contract_outputs(capsys, tmp_path, tiny_model_dir, face_png):
    second = tmp_path / "other.jpg"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(second)
    out = tmp_path / "out"
    res = run_cli(
        capsys,
        "invert",
        face_png,
        second,
        "--model",
        tiny_model_dir,
        "--out",
        out,
        "--steps",
        "3",
        "--perceptual-weight",
        "0",
        "--batch-size",
        "1",
    )
    assert res.code == 0, res.err
    codes = np.load(out / "codes.npy")
    assert codes.shape == (2, 8, 16) and codes.dtype == np.float32
    for stem in ("face one", "other"):
        for suffix in ("enc", "inv"):
            assert Image.open(out / f"{stem}_{suffix}.png").size == (32, 32)
    summary = json.loads((out / "summary.json").read_text())
    assert [e["input"] for e in summary["images"]] == [str(face_png), str(second)]
    assert len(summary["loss_history"]["total"]) == 3
    first = summary["images"][0]
    assert first["mse"] >= 0 and set(first["final_losses"]) == {
        "pixel",
        "perceptual",
        "domain",
        "total",
    }


def test_steps_zero_is_encoder_only(capsys, tmp_path, tiny_model_dir, face_png):
    out = tmp_path / "enc"
    res = run_cli(
        capsys, "invert", face_png, "--model", tiny_model_dir, "--out", out, "--steps", "0"
    )
    assert res.code == 0, res.err
    enc = np.asarray(Image.open(out / "face one_enc.png"))
    inv = np.asarray(Image.open(out / "face one_inv.png"))
    assert np.array_equal(enc, inv)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"GIF89a-nonsense", "not a readable image|corrupt"), (None, "no such file")],
)
def test_bad_input_fails_cleanly_and_leaves_no_output(
    capsys, tmp_path, tiny_model_dir, face_png, content, message
):
    bad = tmp_path / "broken.png"
    if content is not None:
        bad.write_bytes(content)
    out = tmp_path / "out"
    res = run_cli(
        capsys,
        "invert",
        face_png,
        bad,
        "--model",
        tiny_model_dir,
        "--out",
        out,
        "--steps",
        "1",
        "--perceptual-weight",
        "0",
    )
    assert res.code != 0
    assert "broken.png" in res.err and len(res.err.strip().splitlines()) == 1
    assert "Traceback" not in res.err
    import re

    assert re.search(message, res.err)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_perceptual_net_is_a_clear_error(capsys, tmp_path, tiny_model_dir, face_png):
    res = run_cli(capsys, "invert", face_png, "--model", tiny_model_dir, "--out", tmp_path / "o")
    assert res.code != 0 and "--perceptual-weight 0" in res.err


def test_render_and_sample(capsys, tmp_path, tiny_model_dir):
    res = run_cli(
        capsys,
        "sample",
        "--model",
        tiny_model_dir,
        "--n",
        "3",
        "--seed",
        "5",
        "--out",
        tmp_path / "s",
    )
    assert res.code == 0, res.err
    codes = np.load(tmp_path / "s" / "codes.npy")
    assert codes.shape == (3, 8, 16)
    assert sorted(p.name for p in (tmp_path / "s").glob("*.png")) == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]
    again = run_cli(
        capsys,
        "sample",
        "--model",
        tiny_model_dir,
        "--n",
        "3",
        "--seed",
        "5",
        "--out",
        tmp_path / "s2",
    )
    assert again.code == 0
    assert np.array_equal(np.load(tmp_path / "s2" / "codes.npy"), codes)
    res = run_cli(
        capsys,
        "render",
        "--model",
        tiny_model_dir,
        "--codes",
        tmp_path / "s" / "codes.npy",
        "--out",
        tmp_path / "r",
    )
    assert res.code == 0, res.err
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "r" / f"{i:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "s" / f"{i:06d}.png"))
        assert np.array_equal(a, b)
    seq = tmp_path / "seq.npy"
    np.save(seq, np.stack([codes, codes]))  # [2, 3, L, D]
    res = run_cli(
        capsys, "render", "--model", tiny_model_dir, "--codes", seq, "--out", tmp_path / "r2"
    )
    assert res.code == 0, res.err
    assert len(list((tmp_path / "r2").glob("*.png"))) == 6
    single = tmp_path / "single.npy"
    np.save(single, codes[0])  # [L, D] accepted as [1, L, D]
    assert (
        run_cli(
            capsys, "render", "--model", tiny_model_dir, "--codes", single, "--out", tmp_path / "r3"
        ).code
        == 0
    )


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 8, 15), np.float32), r"\[8, 16\]"),
        (np.zeros((8,), np.float32), "codes must be"),
        (np.full((1, 8, 16), np.nan, np.float32), "NaN"),
        (np.array([{"a": 1}], dtype=object), "pickled|numeric"),
    ],
)
def test_render_rejects_bad_codes(capsys, tmp_path, tiny_model_dir, array, message):
    path = tmp_path / "codes.npy"
    np.save(path, array, allow_pickle=True)
    res = run_cli(
        capsys, "render", "--model", tiny_model_dir, "--codes", path, "--out", tmp_path / "r"
    )
    assert res.code != 0
    import re

    assert re.search(message, res.err), res.err
    assert not (tmp_path / "r").exists()


def test_convert_round_trip_and_errors(capsys, tmp_path):
    d = V.vectors_dir()
    out = tmp_path / "model"
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        d / "generator.pth",
        "--encoder",
        d / "encoder.pth",
        "--out",
        out,
    )
    assert res.code == 0, res.err
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["resolution"] == V.config()["resolution"]
    assert len(config["provenance"]["converted_from"]["generator"]["sha256"]) == 64
    # generator given as encoder: a clear error naming what is wrong
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        d / "encoder.pth",
        "--encoder",
        d / "encoder.pth",
        "--out",
        tmp_path / "x",
    )
    assert res.code != 0 and "generator checkpoint" in res.err
    assert not (tmp_path / "x").exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        junk,
        "--encoder",
        d / "encoder.pth",
        "--out",
        tmp_path / "y",
    )
    assert res.code != 0 and "junk.pth" in res.err
