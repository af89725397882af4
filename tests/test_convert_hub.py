"""``idinvert convert``: key/shape errors, pickle safety, and boundaries (``--boundaries``)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import vectors as V

from idinvert.core.boundaries import Boundary, load_boundary, model_boundaries, save_boundary
from idinvert.core.errors import ModelFormatError
from idinvert.core.modeldir import load_model_dir
from idinvert.hub.convert import convert_checkpoints, load_official_checkpoint, sha256_of_file

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
FFHQ_BOUNDARIES = REFERENCE / "boundaries" / "stylegan_ffhq256"


@pytest.fixture(scope="module")
def states() -> dict[str, dict[str, torch.Tensor]]:
    d = V.vectors_dir()
    return {
        "g": load_official_checkpoint(d / "generator.pth"),
        "e": load_official_checkpoint(d / "encoder.pth"),
    }


def _save(tmp: Path, name: str, state: dict) -> Path:
    path = tmp / name
    torch.save(state, path)
    return path


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from idinvert.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0), capsys.readouterr().err


def test_convert_with_boundaries(tmp_path: Path) -> None:
    """Official plain-array and dict .npy files plus our safetensors format, into the model."""
    d = V.vectors_dir()
    bdir = tmp_path / "boundaries"
    bdir.mkdir()
    (bdir / "random.npy").write_bytes((d / "boundary.npy").read_bytes())
    rng = np.random.default_rng(1)
    arr = rng.standard_normal((1, 10, 64)).astype(np.float32)
    np.save(
        bdir / "smile.npy",
        np.array({"boundary": arr, "meta_data": {"manipulate_layers": [0, 1, 2]}}, dtype=object),
        allow_pickle=True,
    )
    save_boundary(
        Boundary("age", rng.standard_normal((1, 64)).astype(np.float32), [4, 5], "ours"),
        bdir / "age.safetensors",
    )
    (bdir / "notes.txt").write_text("ignored")
    out = convert_checkpoints(
        d / "generator.pth", d / "encoder.pth", tmp_path / "model", boundaries_dir=bdir
    )
    found = model_boundaries(out)
    assert sorted(found) == ["age", "random", "smile"]
    smile = load_boundary(found["smile"])
    assert smile.layers == [0, 1, 2] and smile.direction.shape == (10, 64)
    np.testing.assert_array_equal(smile.direction, arr[0])
    assert load_boundary(found["random"]).layers == list(range(10))  # plain array: all layers
    age = load_boundary(found["age"])
    assert age.layers == [4, 5] and age.direction.shape == (10, 64)  # [1, D] broadcast to L rows
    prov = json.loads((out / "config.json").read_text())["provenance"]["converted_from"]
    assert prov["boundaries"]["smile"] == {
        "file": "smile.npy",
        "sha256": sha256_of_file(bdir / "smile.npy"),
    }
    assert prov["generator"]["sha256"] == sha256_of_file(d / "generator.pth")
    assert load_model_dir(out).code_shape == (10, 64)


def test_boundary_shape_mismatch_through_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = V.vectors_dir()
    out = tmp_path / "model"
    code, err = _run_cli(
        [
            "convert",
            "--generator",
            str(d / "generator.pth"),
            "--encoder",
            str(d / "encoder.pth"),
            "--boundaries",
            str(FFHQ_BOUNDARIES),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert "age.npy" in err and "[14, 512]" in err and "[10, 64]" in err
    assert not out.exists() and not list(tmp_path.glob(".model*")), "nothing may be written"


def test_missing_unexpected_and_misshapen_keys(states: dict, tmp_path: Path) -> None:
    d = V.vectors_dir()
    g, e = states["g"], states["e"]
    cases = {
        "missing": (
            {k: v for k, v in g.items() if k != "synthesis.layer3.epilogue.bias"},
            "missing keys: synthesis.layer3.epilogue.bias",
        ),
        "unexpected": (
            {**g, "synthesis.extra.weight": torch.zeros(3)},
            "unexpected keys: synthesis.extra.weight",
        ),
        "shape": (
            {**g, "synthesis.layer3.conv.weight": torch.zeros(64, 64, 1, 1)},
            "wrong shapes: synthesis.layer3.conv.weight: file [64, 64, 1, 1] vs model",
        ),
    }
    for name, (state, expected) in cases.items():
        gen = _save(tmp_path, f"g_{name}.pth", state)
        with pytest.raises(ModelFormatError, match="generator checkpoint") as exc:
            convert_checkpoints(gen, d / "encoder.pth", tmp_path / name)
        assert expected in str(exc.value), (name, str(exc.value))
        assert not (tmp_path / name).exists()
    bad_e = _save(
        tmp_path,
        "e.pth",
        {
            **{k: v for k, v in e.items() if k != "block1.conv1.weight"},
            "block9.bogus": torch.zeros(1),
        },
    )
    with pytest.raises(ModelFormatError, match="encoder checkpoint"):
        convert_checkpoints(d / "generator.pth", bad_e, tmp_path / "enc")


def test_swapped_and_wrong_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = V.vectors_dir()
    with pytest.raises(ModelFormatError, match="not an IDInvert encoder"):
        convert_checkpoints(d / "generator.pth", d / "generator.pth", tmp_path / "a")
    with pytest.raises(ModelFormatError, match="not a StyleGAN generator"):
        convert_checkpoints(d / "encoder.pth", d / "encoder.pth", tmp_path / "b")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    code, err = _run_cli(
        [
            "convert",
            "--generator",
            str(junk),
            "--encoder",
            str(d / "encoder.pth"),
            "--out",
            str(tmp_path / "c"),
        ],
        capsys,
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "junk.pth" in err


class _Payload:
    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self):  # noqa: ANN204
        return os.system, self.args


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_malicious_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"mapping.dense0.fc.weight": _Payload(f"touch {marker}")}, evil)
    with pytest.raises(ModelFormatError, match="refused: the file is a pickle"):
        load_official_checkpoint(evil)
    plain = tmp_path / "evil_plain.pth"
    plain.write_bytes(pickle.dumps(_Payload(f"touch {marker}")))
    with pytest.raises(ModelFormatError):
        load_official_checkpoint(plain)
    assert not marker.exists(), "the payload ran"


def test_malicious_boundary_refused_through_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = V.vectors_dir()
    marker = tmp_path / "PWNED"
    bdir = tmp_path / "b"
    bdir.mkdir()
    obj = np.array(
        {"boundary": np.zeros((1, 10, 64), np.float32), "meta_data": _Payload(f"touch {marker}")},
        dtype=object,
    )
    np.save(bdir / "evil.npy", obj, allow_pickle=True)
    code, err = _run_cli(
        [
            "convert",
            "--generator",
            str(d / "generator.pth"),
            "--encoder",
            str(d / "encoder.pth"),
            "--boundaries",
            str(bdir),
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
    )
    assert code == 1 and "evil.npy" in err and "refus" in err
    assert not marker.exists() and not (tmp_path / "m").exists()
