"""FFHQ-style face alignment and paste-back (idinvert.core.alignment, `invert --align`).

Photos: ``tests/data/astronaut.jpg`` (one face; NASA, public domain) and ``chelsea.jpg`` (a
cat, no human face; CC0), JPEG copies of scikit-image's sample images (see tests/data/README.md).
Tests that run dlib are skipped when the optional ``align`` extra is not installed; the
geometry, paste-back and missing-dependency tests run everywhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from idinvert.core import alignment as A
from idinvert.core.errors import InputImageError
from idinvert.core.images import load_image, save_png

DATA = Path(__file__).parent / "data"
ASTRONAUT = DATA / "astronaut.jpg"
CHELSEA = DATA / "chelsea.jpg"

needs_dlib = pytest.mark.skipif(
    not A.is_available(),
    reason="face alignment extra not installed (pip install 'idinvert[align]')",
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return load_image(ASTRONAUT)


@pytest.fixture(scope="module")
def astronaut_face(astronaut: np.ndarray) -> A.Face:
    faces = A.detect_faces(astronaut) if A.is_available() else []
    if not faces:
        pytest.skip("face alignment extra not installed")
    return faces[0]


def _synthetic_landmarks(cx: float, cy: float, eye_dist: float, angle_deg: float) -> np.ndarray:
    """[68, 2] landmarks whose eyes/mouth corners describe an upright face rotated by angle."""
    lm = np.zeros((68, 2))
    pts = {
        range(36, 42): (-0.5, 0.0),  # left eye (image left)
        range(42, 48): (0.5, 0.0),  # right eye
        range(48, 49): (-0.4, 0.9),  # mouth left corner
        range(54, 55): (0.4, 0.9),  # mouth right corner
    }
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    for idx, (u, v) in pts.items():
        lm[list(idx)] = np.array([cx, cy]) + rot @ (np.array([u, v]) * eye_dist)
    return lm


def _photo(h: int = 200, w: int = 240, seed: int = 0) -> np.ndarray:
    """A smooth random photo (bilinear-upsampled noise) so resampling errors stay small."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


# --- geometry (no dlib needed) ------------------------------------------------------------------


def test_ffhq_quad_is_a_square_levelled_on_the_eyes() -> None:
    lm = _synthetic_landmarks(100, 80, 40, angle_deg=20)
    quad = A.ffhq_quad(lm)
    assert quad.shape == (4, 2)
    sides = np.hypot(*(np.roll(quad, -1, axis=0) - quad).T)
    np.testing.assert_allclose(sides, sides[0], rtol=1e-9)
    # side = 2·max(2·|eye_to_eye|, 1.8·|eye_to_mouth|) = 2·max(80, 64.8)
    assert sides[0] == pytest.approx(160)
    top = quad[3] - quad[0]  # TL → TR runs parallel to eye_to_eye
    assert np.degrees(np.arctan2(top[1], top[0])) == pytest.approx(20)
    centre = quad.mean(axis=0)
    eye_avg = lm[36:48].mean(axis=0)
    mouth_avg = (lm[48] + lm[54]) / 2
    np.testing.assert_allclose(centre, eye_avg + 0.1 * (mouth_avg - eye_avg))
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        A.ffhq_quad(lm[:5])


def test_align_and_paste_back_round_trip_without_dlib() -> None:
    photo = _photo()
    lm = _synthetic_landmarks(120, 90, 22, angle_deg=-12)
    aligned = A.align_face(photo, lm, 128)
    assert aligned.image.shape == (128, 128, 3) and aligned.image.dtype == np.uint8
    st = aligned.transform.to_crop(lm + 0.5)
    np.testing.assert_allclose(st[36:42].mean(0)[1], st[42:48].mean(0)[1], atol=1e-9)  # level
    assert st[36:42].mean(0)[0] + st[42:48].mean(0)[0] == pytest.approx(1.0)  # symmetric
    back = aligned.paste(aligned.image, photo)
    assert back.shape == photo.shape
    ys, xs = np.mgrid[: photo.shape[0], : photo.shape[1]]
    alpha = A.crop_mask(aligned.transform.to_crop(np.stack([xs + 0.5, ys + 0.5], -1)))
    err = (back.astype(float) - photo)[alpha > 0.99]
    assert np.mean(err**2) < 10
    np.testing.assert_array_equal(back[alpha == 0], photo[alpha == 0])


def test_transform_dict_round_trip_and_validation() -> None:
    photo = _photo()
    aligned = A.align_face(photo, _synthetic_landmarks(120, 100, 20, 5), 64)
    data = json.loads(json.dumps(aligned.to_dict()))
    transform = A.AlignTransform.from_dict(data["transform"])
    np.testing.assert_allclose(transform.quad, aligned.transform.quad)
    result = np.full((64, 64, 3), 200, np.uint8)
    np.testing.assert_array_equal(
        A.paste_back(photo, result, data["transform"]), aligned.paste(result, photo)
    )
    with pytest.raises(ValueError, match="alignment was made on a 240×200"):
        A.paste_back(photo[:100], result, transform)
    with pytest.raises(ValueError, match="invalid alignment transform"):
        A.AlignTransform.from_dict({"quad": [[0, 0]], "image_size": [3, 3]})


def test_paste_back_of_an_edit_stays_inside_the_mask() -> None:
    photo = _photo()
    aligned = A.align_face(photo, _synthetic_landmarks(120, 90, 20, 30), 64)
    edit = np.zeros((256, 256, 3), np.uint8)  # another size than the crop: resampled
    edit[..., 1] = 255
    for shape in ("ellipse", "square"):
        out = A.paste_back(photo, edit, aligned.transform, shape=shape, feather=0.1)
        cx, cy = aligned.transform.to_image(np.array([0.5, 0.5])).astype(int)
        np.testing.assert_array_equal(out[cy, cx], [0, 255, 0])
        corners = np.asarray(aligned.transform.quad) + 0.5
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        np.testing.assert_array_equal(out[y1:], photo[y1:])  # far pixels untouched
        np.testing.assert_array_equal(out[:, x1:], photo[:, x1:])


def test_padding_fills_outside_the_photo() -> None:
    photo = _photo(seed=1)
    lm = _synthetic_landmarks(30, 25, 22, 0)  # face at the top-left corner: quad leaves photo
    padded = A.align_face(photo, lm, 64).image
    black = A.align_face(photo, lm, 64, enable_padding=False).image
    assert black[:8, :8].max() == 0  # outside the photo without FFHQ's padding
    assert padded[:8, :8].mean() > 20  # reflected, blurred, faded to the median colour


# --- detection and alignment on a real photo ---------------------------------------------------


@needs_dlib
def test_detects_the_astronaut(astronaut: np.ndarray, astronaut_face: A.Face) -> None:
    faces = A.detect_faces(astronaut)
    assert len(faces) == 1  # the weak detection on the mission patch is dropped (min_score)
    face = astronaut_face
    assert face.landmarks.shape == (68, 2) and face.score > 1
    left, top, right, bottom = face.bbox
    assert 150 < left < right < 300 and 60 < top < bottom < 200
    inside = (face.landmarks[:, 0] > left - 15) & (face.landmarks[:, 0] < right + 15)
    assert inside.all()
    eye_l, eye_r = face.landmarks[36:42].mean(0), face.landmarks[42:48].mean(0)
    assert eye_l[0] < eye_r[0] and abs(eye_l[1] - eye_r[1]) < 8  # upright, eyes level
    assert (face.landmarks[48:68, 1] > eye_l[1] + 20).all()  # mouth below the eyes
    assert json.dumps(face.to_dict())


@needs_dlib
def test_aligned_astronaut_has_ffhq_eye_positions(
    astronaut: np.ndarray, astronaut_face: A.Face, tmp_path: Path
) -> None:
    r = 256
    aligned = A.align_face(astronaut, astronaut_face, r)
    assert aligned.image.shape == (r, r, 3)
    save_png(aligned.image, tmp_path / "aligned.png")
    # Re-detect on the crop: an independent check that the pixels, not only the math, align.
    again = A.detect_faces(aligned.image)
    assert len(again) == 1
    eye_l = again[0].landmarks[36:42].mean(0) / r
    eye_r = again[0].landmarks[42:48].mean(0) / r
    for eye in (eye_l, eye_r):
        assert 0.40 <= eye[1] <= 0.50
    assert abs(eye_l[1] - eye_r[1]) < 0.02
    assert (eye_l[0] + eye_r[0]) / 2 == pytest.approx(0.5, abs=0.02)
    assert eye_r[0] - eye_l[0] == pytest.approx(0.25, abs=0.03)


@needs_dlib
def test_identity_paste_back_reproduces_the_photo(
    astronaut: np.ndarray, astronaut_face: A.Face
) -> None:
    aligned = A.align_face(astronaut, astronaut_face, 256)
    full = aligned.paste(aligned.image, astronaut)
    assert full.shape == astronaut.shape and full.dtype == np.uint8
    h, w = astronaut.shape[:2]
    ys, xs = np.mgrid[:h, :w]
    alpha = A.crop_mask(aligned.transform.to_crop(np.stack([xs + 0.5, ys + 0.5], -1)))
    diff = full.astype(float) - astronaut
    assert (alpha > 0.99).sum() > 10_000
    assert np.mean(diff[alpha > 0.99] ** 2) < 40  # two resamplings apart
    np.testing.assert_array_equal(full[alpha == 0], astronaut[alpha == 0])
    np.testing.assert_array_equal(full[300:], astronaut[300:])  # far pixels untouched


@needs_dlib
def test_face_index_orders_by_size(astronaut: np.ndarray) -> None:
    face = astronaut[40:240, 120:320]  # 200 px around the face
    small = np.asarray(Image.fromarray(face).resize((120, 120), Image.Resampling.LANCZOS))
    canvas = np.full((240, 360, 3), 128, np.uint8)
    canvas[20:220, 10:210] = face
    canvas[60:180, 230:350] = small
    faces = A.detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].bbox[0] < 210 <= faces[1].bbox[0]
    aligned, found = A.align_image(canvas, 64, face_index=1)
    assert found == 2
    assert aligned.transform.quad[:, 0].mean() > 230
    with pytest.raises(A.NoFaceError, match="face index 2 requested but only 2"):
        A.align_image(canvas, 64, face_index=2, name="two.png")


@needs_dlib
def test_no_face_and_tiny_images_are_clear_errors() -> None:
    cat = load_image(CHELSEA)
    with pytest.raises(A.NoFaceError, match=r"chelsea\.jpg: no face found"):
        A.align_image(cat, 64, name=str(CHELSEA))
    with pytest.raises(InputImageError, match="at least 64×64"):
        A.detect_faces(np.zeros((40, 200, 3), np.uint8), name="tiny.png")


def test_missing_dlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    assert not A.is_available()
    with pytest.raises(A.AlignmentUnavailableError, match=r"pip install 'idinvert\[align\]'"):
        A.detect_faces(np.zeros((100, 100, 3), np.uint8))


@needs_dlib
def test_missing_landmark_model_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(A.LANDMARKS_ENV, str(tmp_path / "missing.dat"))
    with pytest.raises(A.AlignmentUnavailableError, match="missing.dat, which is not a file"):
        A.detect_faces(np.zeros((100, 100, 3), np.uint8))
    monkeypatch.delenv(A.LANDMARKS_ENV)
    monkeypatch.setattr(A.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(A.AlignmentUnavailableError, match="landmark model .* is missing"):
        A.check_available()


# --- CLI ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_lpips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's LPIPS metric (a VGG16 build, ~9 s here) is not what these tests are about."""
    monkeypatch.setattr("idinvert.cli.commands._lpips_metric", lambda device: None)


@needs_dlib
def test_cli_invert_align_paste_back(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--model", tiny_model_dir, "--steps", "1", "--perceptual-weight", "0", "--out", out]
    res = run_cli(capsys, "invert", ASTRONAUT, "--align", "--paste-back", *args)
    assert res.code == 0, res.err
    aligned = np.asarray(Image.open(out / "astronaut_aligned.png"))
    full = np.asarray(Image.open(out / "astronaut_full.png"))
    assert aligned.shape == (32, 32, 3)
    assert full.shape == (512, 512, 3)  # the original size
    photo = load_image(ASTRONAUT)
    np.testing.assert_array_equal(full[300:], photo[300:])
    entry = json.loads((out / "summary.json").read_text())["images"][0]["alignment"]
    assert entry["aligned_png"] == "astronaut_aligned.png"
    assert entry["full_png"] == "astronaut_full.png"
    assert entry["faces_found"] == 1 and entry["face_index"] == 0
    # A later run (e.g. after `edit`) pastes back from the recorded transform alone.
    inv = np.asarray(Image.open(out / "astronaut_inv.png"))
    np.testing.assert_array_equal(A.paste_back(photo, inv, entry["transform"]), full)

    bad = run_cli(capsys, "invert", CHELSEA, "--align", *args[:-1], tmp_path / "bad")
    assert bad.code == 1 and "chelsea.jpg: no face found" in bad.err
    assert not (tmp_path / "bad").exists()
    usage = run_cli(capsys, "invert", ASTRONAUT, "--paste-back", *args[:-1], tmp_path / "u")
    assert usage.code == 2 and "need --align" in usage.err


@needs_dlib
def test_cli_aligns_by_default_for_ffhq_models(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    model = tmp_path / "ffhq_tiny"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["image"]["alignment"] = "ffhq"
    (model / "config.json").write_text(json.dumps(config))
    args = ["--model", model, "--steps", "0", "--perceptual-weight", "0"]
    assert run_cli(capsys, "invert", ASTRONAUT, *args, "--out", tmp_path / "a").code == 0
    assert (tmp_path / "a" / "astronaut_aligned.png").is_file()
    res = run_cli(capsys, "invert", ASTRONAUT, *args, "--no-align", "--out", tmp_path / "b")
    assert res.code == 0
    assert not (tmp_path / "b" / "astronaut_aligned.png").exists()


def test_cli_without_the_extra_is_clear(
    capsys: pytest.CaptureFixture[str],
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    res = run_cli(
        capsys, "invert", ASTRONAUT, "--align", "--model", tiny_model_dir, "--steps", "0",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert res.code == 1
    assert "pip install 'idinvert[align]'" in res.err and "--no-align" in res.err
