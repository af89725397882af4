"""Input images: every PIL-readable kind is accepted and converted, bad files are refused
with a message naming the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from idinvert.core.errors import InputImageError
from idinvert.core.images import (
    load_image,
    resize_bilinear_cv2,
    resize_to_model,
    to_tensor,
    to_uint8,
)


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_modes_are_converted_to_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    cases = {
        "grey.png": base.convert("L"),
        "palette.png": base.convert("P"),
        "rgba.png": base.convert("RGBA"),
        "cmyk.jpg": base.convert("CMYK"),
        "la.png": base.convert("LA"),
    }
    for name, img in cases.items():
        out = load_image(_save(img, tmp_path / name))
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8, name
    grey = load_image(tmp_path / "grey.png")
    assert np.array_equal(grey[..., 0], grey[..., 2])


def test_rgba_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = load_image(_save(img, tmp_path / "clear.png"))
    assert (out == 255).all()


def test_16bit_grey_is_scaled_to_8bit(tmp_path):
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    arr[:4] = 257 * 100
    out = load_image(_save(Image.fromarray(arr), tmp_path / "deep.png"))
    assert out[0, 0, 0] == 100 and out[-1, -1, 0] == 255


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_image(_save(Image.fromarray(arr), tmp_path / "rot.jpg", exif=exif, quality=100))
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt|not a readable"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputImageError, match=message) as info:
        load_image(path)
    assert "bad.png" in str(info.value)


def test_truncated_jpeg_is_refused(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputImageError, match="cut.jpg"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused(tmp_path):
    # A tiny PNG claiming 20000×20000 pixels (a classic bomb): refused before decoding.
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path, optimize=True)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(InputImageError, match="bomb.png.*(MP|bomb)"):
        load_image(path)


def test_resize_matches_cv2_fixed_point_on_upscale_and_downscale():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    up = resize_bilinear_cv2(img, 64, 64)
    down = resize_bilinear_cv2(img, 16, 16)
    assert up.shape == (64, 64, 3) and down.shape == (16, 16, 3)
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert (resize_bilinear_cv2(flat, 23, 31) == 77).all()


def test_large_images_are_antialiased_before_resizing():
    stripes = np.zeros((1024, 1024, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes: plain bilinear would alias
    out = resize_to_model(stripes, 64)
    assert abs(float(out.mean()) - 127.5) < 3 and out.std() < 5


def test_tensor_round_trip():
    img = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = to_tensor(img)
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x), img)
