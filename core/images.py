"""Reading, validating, resizing and writing images.

Inside idinvert an image is a ``uint8`` array ``[H, W, 3]`` (RGB) on disk/at the edges, and a
float tensor ``[N, 3, R, R]`` in [−1, 1] inside the networks.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from idinvert.core.errors import InputImageError

#: Largest accepted input file in bytes.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Largest accepted image in pixels (width × height), far above any camera photo.
MAX_PIXELS = 64_000_000
#: Images larger than this multiple of the target side are first reduced with an antialiased
#: box filter (plain bilinear, as in the official preprocessing, aliases badly on big photos).
ANTIALIAS_FACTOR = 2


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha is composited on white, 16/32-bit scaled to 8 bit."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if img.mode == "F" and arr.max(initial=0) <= 1.0:
            peak = 1.0
        arr8 = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file → ``uint8 [H, W, 3]`` RGB, EXIF orientation applied.

    Accepts anything Pillow reads (PNG, JPEG, WebP, TIFF, BMP, GIF first frame, ...), in any
    mode (grey, palette, RGBA, CMYK, 16-bit).

    Raises:
        InputImageError: missing, empty, too large, a decompression bomb, or not an image;
            the message names the file and says what is accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputImageError(f"{path}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise InputImageError(
            f"{path}: file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB"
        )
    return decode_image(path.read_bytes(), str(path))


def decode_image(data: bytes, name: str = "<image>") -> np.ndarray:
    """Decode image bytes (see :func:`load_image`) → ``uint8 [H, W, 3]`` RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise InputImageError(
                        f"{name}: image is {w}×{h} = {w * h / 1e6:.0f} MP; the limit is "
                        f"{MAX_PIXELS / 1e6:.0f} MP"
                    )
                if w < 1 or h < 1:
                    raise InputImageError(f"{name}: image has no pixels ({w}×{h})")
                img.load()
                img = ImageOps.exif_transpose(img) or img
                rgb = _to_rgb(img)
    except InputImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputImageError(
            f"{name}: refused as a decompression bomb (too many pixels)"
        ) from None
    except UnidentifiedImageError:
        raise InputImageError(
            f"{name}: not a readable image; accepted are PNG, JPEG, WebP, BMP, TIFF, GIF and "
            "other Pillow formats"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputImageError(f"{name}: corrupt or truncated image ({exc})") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _linear_taps(n_src: int, n_dst: int, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    """Source indices and 11-bit fixed-point weights of bilinear resampling along one axis.

    Mirrors cv2.INTER_LINEAR's uint8 path: float32 source coordinates with half-pixel
    centres; horizontally the weights are clamped at the borders, vertically only the row
    indices are (an OpenCV quirk that matters for exact reproduction).
    """
    f = ((np.arange(n_dst) + 0.5) * (n_src / n_dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s
    if clamp_weights:
        low, high = s < 0, s >= n_src - 1
        f[low] = 0
        s[low] = 0
        f[high] = 0
        s[high] = n_src - 1
    w0 = np.rint((1 - f) * 2048).astype(np.int64)
    w1 = np.rint(f * 2048).astype(np.int64)
    return np.clip(s, 0, n_src - 1), np.clip(s + 1, 0, n_src - 1), w0, w1


def resize_bilinear_cv2(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bit-exact emulation of ``cv2.resize(image, (width, height))`` (INTER_LINEAR, uint8).

    Args:
        image: ``uint8 [H, W, C]``.
        height, width: output size.

    Returns:
        ``uint8 [height, width, C]``.
    """
    src = image.astype(np.int64)
    x0, x1, a0, a1 = _linear_taps(src.shape[1], width, clamp_weights=True)
    y0, y1, b0, b1 = _linear_taps(src.shape[0], height, clamp_weights=False)
    rows = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]
    r0, r1 = rows[y0] >> 4, rows[y1] >> 4
    out = (((r0 * b0[:, None, None]) >> 16) + ((r1 * b1[:, None, None]) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_to_model(image: np.ndarray, resolution: int) -> np.ndarray:
    """Resize ``uint8 [H, W, 3]`` to ``[R, R, 3]`` like the official preprocessing.

    Bilinear (cv2.INTER_LINEAR-exact); inputs more than ``ANTIALIAS_FACTOR``× larger than R
    are first box-reduced (antialiased) to about 2R so large photos do not alias.
    """
    h, w = image.shape[:2]
    if (h, w) == (resolution, resolution):
        return image
    factor = min(h, w) // (ANTIALIAS_FACTOR * resolution)
    if factor >= 2:
        image = np.asarray(Image.fromarray(image).reduce(factor))
    return resize_bilinear_cv2(image, resolution, resolution)


def to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` (or one ``[H, W, 3]``) → float ``[N, 3, H, W]`` in [−1, 1]."""
    arr = np.stack(images) if isinstance(images, list) else np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3] images, got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float()
    return x / 255.0 * 2.0 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float ``[N, 3, H, W]`` in [−1, 1] → ``uint8 [N, H, W, 3]`` (official postprocess:
    ``clip((x + 1) * 127.5 + 0.5)`` then truncate)."""
    x = images.detach().float().cpu()
    x = ((x + 1.0) * 127.5 + 0.5).clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_for_model(path: str | Path, resolution: int) -> np.ndarray:
    """:func:`load_image` then :func:`resize_to_model` → ``uint8 [R, R, 3]``."""
    return resize_to_model(load_image(path), resolution)


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write ``uint8 [H, W, 3]`` as PNG atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def save_gif(frames: list[np.ndarray], path: str | Path, duration_ms: int = 120) -> None:
    """Write ``uint8 [H, W, 3]`` frames as a looping GIF that plays forward then back."""
    if not frames:
        raise ValueError("no frames to write")
    seq = list(frames) + list(frames[-2:0:-1])
    pil = [Image.fromarray(f) for f in seq]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pil[0].save(
        tmp, format="GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0
    )
    os.replace(tmp, path)


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile ``uint8 [N, H, W, 3]`` into ``columns`` columns → ``[rows·H, columns·W, 3]``."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    return grid
