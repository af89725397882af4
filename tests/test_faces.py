"""Tests of the procedural face renderer (idinvert.training.faces) and `idinvert data`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from idinvert.training.data_cli import data_group
from idinvert.training.faces import (
    ATTRIBUTES,
    HAIR_STYLES,
    THRESHOLDS,
    FaceParams,
    attribute_values,
    face_rng,
    iter_faces,
    labels_of,
    landmarks,
    render_dataset,
    render_face,
    sample_params,
)

RES = 64


def _params(seed: int = 0, index: int = 0, **changes: object) -> FaceParams:
    return dataclasses.replace(sample_params(face_rng(seed, index)), **changes)


def _base(**changes: object) -> FaceParams:
    """A plain, frontal, evenly lit face to flip attributes on."""
    neutral: dict[str, object] = {
        "smile": -0.5,
        "eyeglasses": -1.0,
        "eyes_open": 1.0,
        "dark_hair": 1.5,
        "dark_skin": -1.5,
        "yaw_right": 0.0,
        "beard": -1.0,
        "old": -1.0,
        "hair_style": HAIR_STYLES.index("short"),
        "roll": 0.0,
        "light_x": 0.0,
        "light_y": -0.3,
        "light_strength": 0.3,
        "noise_level": 1.0,
    }
    neutral.update(changes)
    return _params(3, 11, **neutral)


def _img(params: FaceParams, resolution: int = RES) -> np.ndarray:
    """(R, R, 3) float32 image in [0, 255]."""
    return np.asarray(render_face(params, resolution), dtype=np.float32)


def _img_ss(params: FaceParams, supersample: int | None) -> np.ndarray:
    return np.asarray(render_face(params, RES, supersample=supersample), dtype=np.float32)


def _box(params: FaceParams, key: str, dx: float, dy: float, oy: float = 0.0) -> tuple:
    """Pixel slices of a box of half-size (dx, dy) frames around landmark ``key``."""
    x, y = landmarks(params)[key]
    y += oy
    return (
        slice(round((y - dy) * RES), round((y + dy) * RES)),
        slice(round((x - dx) * RES), round((x + dx) * RES)),
    )


def _eye_band(params: FaceParams) -> tuple:
    (lx, ly), (rx, ry) = landmarks(params)["left_eye"], landmarks(params)["right_eye"]
    y = 0.5 * (ly + ry)
    return (
        slice(round((y - 0.07) * RES), round((y + 0.07) * RES)),
        slice(round((lx - 0.09) * RES), round((rx + 0.09) * RES)),
    )


def _flip(name: str, low: float, high: float, **changes: object) -> tuple:
    lo, hi = _base(**{name: low}, **changes), _base(**{name: high}, **changes)
    assert labels_of(lo)[name] == 0 and labels_of(hi)[name] == 1
    return lo, hi, _img(lo), _img(hi)


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- basics


def test_same_seed_and_index_give_the_same_face() -> None:
    a, b = sample_params(face_rng(5, 17)), sample_params(face_rng(5, 17))
    assert a == b
    assert np.array_equal(_img(a), _img(b))
    # independent of how many faces are streamed before
    whole = [img for img, _ in iter_faces(9, start=0, count=6, resolution=32)]
    tail = [img for img, _ in iter_faces(9, start=4, count=2, resolution=32)]
    assert np.array_equal(whole[4], tail[0]) and np.array_equal(whole[5], tail[1])


def test_different_seeds_and_indices_differ() -> None:
    base = _img(sample_params(face_rng(0, 0)))
    assert np.abs(base - _img(sample_params(face_rng(1, 0)))).mean() > 10
    assert np.abs(base - _img(sample_params(face_rng(0, 1)))).mean() > 10


def test_labels_are_balanced_and_follow_the_values() -> None:
    params = [sample_params(face_rng(0, i)) for i in range(200)]
    labels = np.array([[labels_of(p)[a] for a in ATTRIBUTES] for p in params])
    rates = labels.mean(axis=0)
    for name, rate in zip(ATTRIBUTES, rates, strict=True):
        assert 0.2 <= rate <= 0.8, f"{name}: {rate:.2f}"
    p = params[0]
    values = attribute_values(p)
    assert list(values) == list(ATTRIBUTES) == list(labels_of(p))
    for name in ATTRIBUTES:
        assert labels_of(p)[name] == int(values[name] > THRESHOLDS[name])
    required = {"smile", "eyeglasses", "eyes_open", "dark_hair", "dark_skin", "yaw_right"}
    assert required <= set(ATTRIBUTES)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_resolutions(resolution: int) -> None:
    img = render_face(_params(2, 3), resolution)
    assert img.mode == "RGB" and img.size == (resolution, resolution)
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (resolution, resolution, 3)
    assert arr.std() > 20  # a face, not a flat field


def test_same_face_at_every_resolution() -> None:
    p = _params(4, 2)
    small = _img(p, 32)
    down = np.asarray(render_face(p, 128).resize((32, 32), Image.Resampling.BOX), np.float32)
    assert np.abs(small - down).mean() < 6


def test_edges_are_antialiased() -> None:
    p = _params(1, 1, noise_level=0.0)
    ref, default, aliased = (_img_ss(p, ss) for ss in (16, None, 1))
    assert np.abs(default - ref).mean() < 0.4 * np.abs(aliased - ref).mean()


def test_rejects_bad_resolution() -> None:
    with pytest.raises(ValueError):
        render_face(_params(), 4)


# --------------------------------------------------------------------------- attributes


def test_eyeglasses_change_the_eye_region_only() -> None:
    lo, _, a, b = _flip("eyeglasses", -1.0, 1.0)
    diff = np.abs(a - b).sum(axis=2)
    rows, cols = _eye_band(lo)
    assert diff[rows, cols].mean() > 15
    assert diff[rows, cols].sum() > 0.8 * diff.sum()


def test_eyes_open_shows_sclera_and_iris() -> None:
    closed, _, a, b = _flip("eyes_open", -2.0, 1.0, dark_skin=0.0)  # mid skin: sclera stands out
    for key in ("left_eye", "right_eye"):
        rows, cols = _box(closed, key, 0.04, 0.025)
        assert np.abs(a - b)[rows, cols].mean() > 20
        assert _luma(b)[rows, cols].max() > _luma(a)[rows, cols].max() + 25  # white of the eye


def test_smile_opens_the_mouth() -> None:
    lo, _, a, b = _flip("smile", -0.5, 1.5, dark_skin=0.0)
    rows, cols = _box(lo, "mouth", 0.09, 0.04)
    assert np.abs(a - b)[rows, cols].mean() > 10
    assert _luma(b)[rows, cols].min() < _luma(a)[rows, cols].min() - 40  # open mouth
    assert _luma(b)[rows, cols].max() > _luma(a)[rows, cols].max() + 10  # teeth
    rows, cols = _box(lo, "hair_top", 0.1, 0.02, oy=0.04)
    assert np.array_equal(a[rows, cols], b[rows, cols])


def test_dark_hair_darkens_the_hair() -> None:
    lo, _, a, b = _flip("dark_hair", -2.0, 2.0)
    rows, cols = _box(lo, "hair_top", 0.08, 0.025, oy=0.045)
    assert _luma(a)[rows, cols].mean() > _luma(b)[rows, cols].mean() + 40


def test_dark_skin_darkens_the_skin() -> None:
    lo, _, a, b = _flip("dark_skin", -2.0, 2.0)
    for key in ("left_eye", "right_eye"):
        rows, cols = _box(lo, key, 0.03, 0.02, oy=0.09)  # cheek
        assert _luma(a)[rows, cols].mean() > _luma(b)[rows, cols].mean() + 60


def test_yaw_right_moves_the_features_right() -> None:
    lo, hi, a, b = _flip("yaw_right", -1.5, 1.5, dark_hair=-2.0)  # blond: only eyes are dark
    assert landmarks(hi)["nose_tip"][0] > landmarks(lo)["nose_tip"][0] + 0.04

    def iris_x(img: np.ndarray, p: FaceParams) -> float:
        """Centroid (in frames) of the dark iris/pupil pixels on the eye line."""
        rows, _ = _eye_band(p)
        rows = slice(rows.start + 3, rows.stop - 3)
        x0, x1 = round((p.center_x - 0.2) * RES), round((p.center_x + 0.2) * RES)
        luma = _luma(img)[rows, x0:x1]
        dark = np.clip(np.median(luma) - luma - 50, 0, None).sum(axis=0)
        return float((dark * np.arange(x0, x1)).sum() / dark.sum()) / RES

    assert iris_x(b, hi) > iris_x(a, lo) + 0.04


def test_beard_darkens_the_jaw() -> None:
    lo, _, a, b = _flip("beard", -1.0, 1.5)
    for dx in (-0.08, 0.08):
        rows, cols = _box(lo, "chin", 0.02, 0.02, oy=-0.03)
        cols = slice(cols.start + round(dx * RES), cols.stop + round(dx * RES))
        assert _luma(a)[rows, cols].mean() > _luma(b)[rows, cols].mean() + 40


def test_old_greys_the_hair_and_adds_wrinkles() -> None:
    lo, _, a, b = _flip("old", -1.0, 2.0, dark_hair=-2.0, hair_hue=1)  # ginger hair
    rows, cols = _box(lo, "hair_top", 0.08, 0.025, oy=0.045)
    saturation = lambda img: (img.max(axis=2) - img.min(axis=2))[rows, cols].mean()  # noqa: E731
    assert saturation(a) > saturation(b) + 30
    rows, cols = _box(lo, "mouth", 0.15, 0.05, oy=-0.06)  # nasolabial folds
    assert np.abs(a - b)[rows, cols].mean() > 1.0


# --------------------------------------------------------------------------- data sets and CLI


def _check_dataset(out: Path, n: int, seed: int, resolution: int) -> None:
    meta = json.loads((out / "labels.json").read_text())
    assert set(meta) == {"attributes", "resolution", "seed", "items"}
    assert meta["attributes"] == list(ATTRIBUTES)
    assert meta["resolution"] == resolution and meta["seed"] == seed
    assert [item["file"] for item in meta["items"]] == [f"{i:06d}.png" for i in range(n)]
    streamed = list(iter_faces(seed, 0, n, resolution))
    for item, (img, labels) in zip(meta["items"], streamed, strict=True):
        assert set(item) == {"file", "labels", "values"}
        assert item["labels"] == labels
        assert set(item["values"]) == set(ATTRIBUTES)
        assert all(isinstance(v, float) for v in item["values"].values())
        png = Image.open(out / item["file"])
        assert png.mode == "RGB" and png.size == (resolution, resolution)
        assert np.array_equal(np.asarray(png), img)


def test_render_dataset_writes_pngs_and_labels(tmp_path: Path) -> None:
    out = render_dataset(tmp_path / "faces", n=3, seed=7, resolution=32, progress=False)
    assert out == tmp_path / "faces"
    _check_dataset(out, 3, 7, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]  # no temp dir left
    with pytest.raises(FileExistsError, match="not empty"):
        render_dataset(out, n=2, seed=7, resolution=32, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    render_dataset(empty, n=1, seed=7, resolution=32, progress=False)
    assert (empty / "000000.png").is_file()
    with pytest.raises(ValueError):
        render_dataset(tmp_path / "none", n=0, seed=7, progress=False)


def test_cli_render(tmp_path: Path) -> None:
    out = tmp_path / "data"
    args = ["render", "--n", "2", "--seed", "3", "--out", str(out), "--resolution", "32"]
    result = CliRunner().invoke(data_group, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "rendered 2 faces" in result.output and len(result.output.strip().splitlines()) == 1
    _check_dataset(out, 2, 3, 32)
    again = CliRunner().invoke(data_group, [*args, "--no-progress"])
    assert again.exit_code == 1 and "not empty" in again.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--n", "0", "positive"),
        ("--resolution", "48", "power of 2"),
        ("--resolution", "2048", "power of 2"),
    ],
)
def test_cli_rejects_bad_parameters(tmp_path: Path, option: str, value: str, message: str) -> None:
    args = {"--n": "2", "--seed": "0", "--out": str(tmp_path / "x"), "--resolution": "32"}
    args[option] = value
    result = CliRunner().invoke(data_group, ["render", *[t for kv in args.items() for t in kv]])
    assert result.exit_code == 2
    assert option in result.output and message in result.output
    assert not (tmp_path / "x").exists()
