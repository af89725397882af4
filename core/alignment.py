"""FFHQ-style face alignment of unaligned photos, and pasting results back into the photo.

Face models (``config.json`` ``image.alignment == "ffhq"``) were trained on crops made by the
FFHQ dataset's published procedure (``recreate_aligned_images`` in NVlabs/ffhq-dataset); a
photo must be cropped the same way before inversion. This module reproduces that procedure:

1. :func:`detect_faces` — dlib's HOG face detector + the 68-point shape predictor
   (``shape_predictor_68_face_landmarks.dat``, shipped by the ``face-recognition-models``
   package). Both are optional dependencies (``pip install 'idinvert[align]'``), imported on
   first use, and run fully offline.
2. :func:`ffhq_quad` — eye centres and mouth corners → an oriented square (the "quad").
3. :func:`align_face` — shrink (big faces), crop with a border, reflect-pad + blur where the
   quad leaves the photo (as FFHQ does), quad transform at ``supersample``× the output size,
   antialiased resize → ``uint8 [R, R, 3]``.
4. :func:`paste_back` / :meth:`AlignedFace.paste` — the inverse: warp a (possibly edited)
   ``[r, r, 3]`` result back into the original photo and blend it with a feathered mask.

Coordinates: landmarks, boxes and quads are ``(x, y)`` in pixels of the original photo, with
pixel *centres* at integers (dlib's and the FFHQ script's convention). The quad's corners are,
in this order, the top-left, bottom-left, bottom-right and top-right corner of the aligned
crop. The quad is always a (rotated) square, so the crop ↔ photo map is a similarity
transform, fully described by :class:`AlignTransform` (JSON-able through ``to_dict``).

Nothing heavy happens at import: dlib, the landmark model and torch load on first use.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from idinvert.core.errors import IdinvertError, InputImageError

#: pip line shown when the optional dependencies are missing.
INSTALL_HINT = "install with pip install 'idinvert[align]'"
#: Environment variable that may point at a ``shape_predictor_68_face_landmarks.dat`` file
#: (e.g. from the Hub repo ``public-data/dlib_face_landmark_model``) instead of the one in
#: the ``face-recognition-models`` package.
LANDMARKS_ENV = "IDINVERT_DLIB_LANDMARKS"
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
#: Smallest accepted photo side in pixels: dlib's HOG detector finds faces of about 40 px and
#: up (80 px without upsampling); smaller photos cannot hold a usable face.
MIN_IMAGE_SIDE = 64
#: Detection runs on a copy whose longer side is at most this (boxes are scaled back; the
#: landmarks are always fitted on the full-resolution photo).
DETECT_MAX_SIDE = 1024
#: Detections scoring below this are dropped. dlib's HOG detector reports anything above 0;
#: on the test photos real faces (also rotated 10-30°, or 35 px wide) scored 0.68-1.8 and
#: false positives (a mission patch) 0.07-0.13.
MIN_SCORE = 0.3
#: Version of the transform dict written by :meth:`AlignTransform.to_dict`.
TRANSFORM_VERSION = 1

# dlib's detector/predictor objects are shared; calls are serialised (a web demo's threads).
_DLIB_LOCK = threading.Lock()


class AlignmentUnavailableError(IdinvertError, RuntimeError):
    """dlib or the 68-point landmark model is not installed / not found."""


class NoFaceError(InputImageError):
    """No face was found in an input photo (or the requested face index does not exist)."""


# ---------------------------------------------------------------------------------------------
# Optional dependencies


def _import_dlib() -> Any:
    """Import dlib, or raise :class:`AlignmentUnavailableError` with the install line."""
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        raise AlignmentUnavailableError(
            f"face alignment needs dlib, which is not installed ({exc}); {INSTALL_HINT}"
        ) from None


def landmarks_model_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat``.

    ``$IDINVERT_DLIB_LANDMARKS`` when set, else the file inside the installed
    ``face-recognition-models`` package (located without importing it: its ``__init__``
    needs ``pkg_resources``, which recent setuptools no longer ship).

    Raises:
        AlignmentUnavailableError: the file cannot be found.
    """
    env = os.environ.get(LANDMARKS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise AlignmentUnavailableError(
                f"${LANDMARKS_ENV} is set to {path}, which is not a file; point it at "
                f"{LANDMARKS_FILE} or unset it and {INSTALL_HINT}"
            )
        return path
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / LANDMARKS_FILE
        if path.is_file():
            return path
    raise AlignmentUnavailableError(
        f"the 68-point face landmark model ({LANDMARKS_FILE}) is missing; {INSTALL_HINT} "
        f"(it comes with face-recognition-models) or set ${LANDMARKS_ENV} to the file"
    )


@functools.lru_cache(maxsize=1)
def _detector() -> Any:
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=2)
def _predictor(path: str) -> Any:
    dlib = _import_dlib()
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise AlignmentUnavailableError(
            f"cannot load the face landmark model {path} ({exc}); reinstall it: {INSTALL_HINT}"
        ) from None


def check_available() -> None:
    """Raise :class:`AlignmentUnavailableError` unless dlib and the landmark model are there."""
    _import_dlib()
    landmarks_model_path()


def is_available() -> bool:
    """Whether :func:`detect_faces` can run here (dlib importable, landmark model found)."""
    try:
        check_available()
    except AlignmentUnavailableError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        bbox: ``(left, top, right, bottom)`` of the detector's box, pixels of the photo.
        landmarks: float64 ``[68, 2]`` ``(x, y)`` iBUG-68 points (pixel centres at integers).
        score: detector confidence (dlib HOG; > 0 means detected, higher is surer).
    """

    bbox: tuple[float, float, float, float]
    landmarks: np.ndarray = field(repr=False)
    score: float = 0.0

    @property
    def area(self) -> float:
        """Box area in square pixels (faces are ordered by it, largest first)."""
        left, top, right, bottom = self.bbox
        return max(right - left, 0.0) * max(bottom - top, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``bbox``, ``score`` and the 68 ``landmarks``."""
        return {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "score": round(float(self.score), 4),
            "landmarks": np.round(self.landmarks, 2).tolist(),
        }


def check_image(image: np.ndarray, name: str = "<image>") -> None:
    """Validate ``uint8 [H, W, 3]`` for face detection.

    Raises:
        InputImageError: not ``uint8 [H, W, 3]``, or a side below :data:`MIN_IMAGE_SIDE`.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputImageError(
            f"{name}: expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}"
        )
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise InputImageError(
            f"{name}: image is {w}×{h}; face alignment needs at least "
            f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels"
        )


def detect_faces(
    image: np.ndarray,
    *,
    upsample: int = 1,
    max_side: int = DETECT_MAX_SIDE,
    min_score: float = MIN_SCORE,
    name: str = "<image>",
) -> list[Face]:
    """Find faces and their 68 landmarks, largest (by box area) first.

    Args:
        image: ``uint8 [H, W, 3]`` RGB, at least :data:`MIN_IMAGE_SIDE` on each side.
        upsample: how often dlib doubles the (reduced) image before detecting; each doubling
            halves the smallest findable face (80 px → 40 px) and costs about 4× the time
            (1: 0.14 s at 512², 0.6 s at 1024² on one CPU core; 0: 0.03 s / 0.13 s).
        max_side: detection runs on a copy reduced to at most this longer side.
        min_score: drop detections scoring below this (0 keeps all of dlib's detections).
        name: shown in error messages (the file name).

    Returns:
        The faces, sorted by decreasing box area; empty when none is found.

    Raises:
        InputImageError: wrong shape/dtype or image too small.
        AlignmentUnavailableError: dlib or the landmark model is missing.
    """
    check_image(image, name)
    dlib = _import_dlib()
    predictor = _predictor(str(landmarks_model_path()))
    detector = _detector()
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    small = np.ascontiguousarray(small)
    full = np.ascontiguousarray(image)
    sx, sy = w / small.shape[1], h / small.shape[0]
    faces = []
    with _DLIB_LOCK:
        rects, scores, _ = detector.run(small, upsample, 0.0)
        for rect, score in zip(rects, scores, strict=True):
            if score < min_score:
                continue
            box = (
                rect.left() * sx,
                rect.top() * sy,
                (rect.right() + 1) * sx,
                (rect.bottom() + 1) * sy,
            )
            full_rect = dlib.rectangle(
                round(box[0]), round(box[1]), round(box[2]) - 1, round(box[3]) - 1
            )
            shape = predictor(full, full_rect)
            lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            faces.append(Face(bbox=box, landmarks=lm, score=float(score)))
    faces.sort(key=lambda f: (-f.area, f.bbox[0], f.bbox[1]))
    return faces


def select_face(faces: list[Face], index: int = 0, name: str = "<image>") -> Face:
    """``faces[index]`` (faces ordered by decreasing size) with user-facing errors.

    Raises:
        NoFaceError: no face, or ``index`` out of range (the message names ``name``).
    """
    if not faces:
        raise NoFaceError(
            f"{name}: no face found (dlib's frontal-face detector finds faces of about 40 px "
            "and more, roughly frontal); pass --no-align to invert the whole image"
        )
    if not 0 <= index < len(faces):
        raise NoFaceError(
            f"{name}: face index {index} requested but only {len(faces)} face(s) found "
            f"(valid: 0..{len(faces) - 1}, largest first)"
        )
    return faces[index]


# ---------------------------------------------------------------------------------------------
# FFHQ quad and alignment


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square from 68 landmarks.

    Args:
        landmarks: ``[68, 2]`` ``(x, y)`` iBUG-68 points.

    Returns:
        float64 ``[4, 2]``: top-left, bottom-left, bottom-right, top-right corners, in the
        landmarks' coordinates. Side length ``2·max(2·|eye_to_eye|, 1.8·|eye_to_mouth|)``,
        centred at ``eye_avg + 0.1·eye_to_mouth``, rotated so that the eyes are level.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@dataclass(frozen=True, eq=False)
class AlignTransform:
    """Where an aligned crop lies in its original photo (a similarity transform).

    Attributes:
        quad: float64 ``[4, 2]`` crop corners (TL, BL, BR, TR) in photo pixels, pixel centres
            at integers. A crop pixel at normalised position ``(s, t) ∈ [0, 1]²`` (``(0, 0)``
            = the crop's top-left corner) comes from photo point
            ``TL + s·(TR − TL) + t·(BL − TL)`` (pixel-corner coordinates = centre + 0.5).
        image_size: ``(width, height)`` of the original photo.
        method: ``"ffhq"``.
    """

    quad: np.ndarray
    image_size: tuple[int, int]
    method: str = "ffhq"

    @property
    def side(self) -> float:
        """Side length of the crop square, in photo pixels."""
        return float(np.hypot(*(self.quad[3] - self.quad[0])))

    def _frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Origin (photo corner coordinates) and 2×2 matrix ``[TR − TL, BL − TL]`` (columns)."""
        q = np.asarray(self.quad, dtype=np.float64) + 0.5
        return q[0], np.stack([q[3] - q[0], q[1] - q[0]], axis=1)

    def to_image(self, st: np.ndarray) -> np.ndarray:
        """Normalised crop coordinates ``[..., 2]`` ``(s, t)`` → photo pixel-corner ``(x, y)``."""
        origin, m = self._frame()
        return origin + np.asarray(st, dtype=np.float64) @ m.T

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Photo pixel-corner coordinates ``[..., 2]`` → normalised crop ``(s, t)``."""
        origin, m = self._frame()
        return (np.asarray(xy, dtype=np.float64) - origin) @ np.linalg.inv(m).T

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``summary.json``); :meth:`from_dict` reads it back."""
        return {
            "method": self.method,
            "version": TRANSFORM_VERSION,
            "quad": [[float(x), float(y)] for x, y in np.asarray(self.quad)],
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignTransform:
        """Inverse of :meth:`to_dict`; ``ValueError`` on a malformed dict."""
        try:
            quad = np.asarray(data["quad"], dtype=np.float64)
            w, h = (int(v) for v in data["image_size"])
            method = str(data.get("method", "ffhq"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid alignment transform ({exc!r})") from None
        if quad.shape != (4, 2) or not np.isfinite(quad).all() or w < 1 or h < 1:
            raise ValueError(f"invalid alignment transform: quad {quad.shape}, size {w}×{h}")
        return cls(quad=quad, image_size=(w, h), method=method)


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An aligned face crop and how to put results back into the photo.

    Attributes:
        image: ``uint8 [R, R, 3]`` the aligned crop (the network input).
        transform: crop ↔ photo map (:class:`AlignTransform`, JSON-able).
        face: the detected face it was made from (``None`` when built from bare landmarks).
    """

    image: np.ndarray = field(repr=False)
    transform: AlignTransform
    face: Face | None = None

    def paste(
        self,
        result: np.ndarray,
        original: np.ndarray,
        *,
        feather: float = 0.15,
        shape: Literal["ellipse", "square"] = "ellipse",
    ) -> np.ndarray:
        """:func:`paste_back` of ``result`` (``uint8 [r, r, 3]``) into ``original``."""
        return paste_back(original, result, self.transform, feather=feather, shape=shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``transform`` (+ ``face``: box, score, landmarks)."""
        out: dict[str, Any] = {"transform": self.transform.to_dict()}
        if self.face is not None:
            out["face"] = self.face.to_dict()
        return out


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0])`` (mode 'reflect', truncate 4)
    for float32 ``[H, W, C]``, with torch (a core dependency) instead of scipy."""
    import torch
    import torch.nn.functional as F

    radius = int(4.0 * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return img
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = torch.from_numpy((k / k.sum()).astype(np.float32))
    padded = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[:, None]  # [C,1,H,W]
    with torch.no_grad():
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[:, 0].numpy().transpose(1, 2, 0)


def align_face(
    image: np.ndarray,
    face: Face | np.ndarray,
    resolution: int,
    *,
    supersample: int = 4,
    enable_padding: bool = True,
) -> AlignedFace:
    """Crop one face the way FFHQ was made.

    Steps (as ``recreate_aligned_images`` of NVlabs/ffhq-dataset): shrink the photo by an
    integer factor when the face is more than 2× the output size (Lanczos); crop the quad's
    bounding box plus a border of 10% of its side; where the quad still leaves the photo,
    reflect-pad, blur the padding (σ = 2% of the side) and fade it to the median colour;
    transform the quad to ``supersample·R`` pixels (bilinear) and resize to ``R`` (Lanczos).
    Differences: the shrink maps the quad with the exact resize ratio (FFHQ divides by the
    integer factor, a sub-pixel difference), and the supersampling is relative to ``R``
    (FFHQ: 4096 for 1024, i.e. also 4×).

    Args:
        image: ``uint8 [H, W, 3]`` RGB photo.
        face: a :class:`Face` or its ``[68, 2]`` landmarks.
        resolution: output side ``R`` (the model's resolution), ≥ 1.
        supersample: transform at this multiple of ``R`` before the antialiased resize.
        enable_padding: FFHQ's reflect-pad + blur outside the photo (else black).

    Returns:
        :class:`AlignedFace` with the ``uint8 [R, R, 3]`` crop and its transform.
    """
    if resolution < 1 or supersample < 1:
        raise ValueError(f"resolution and supersample must be ≥ 1, got {resolution}, {supersample}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    landmarks = face.landmarks if isinstance(face, Face) else np.asarray(face)
    quad0 = ffhq_quad(landmarks)
    h0, w0 = image.shape[:2]
    img = Image.fromarray(image)
    quad = quad0.copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    # Shrink.
    shrink = int(np.floor(qsize / resolution * 0.5))
    if shrink > 1:
        rsize = (max(1, int(np.rint(w0 / shrink))), max(1, int(np.rint(h0 / shrink))))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad = (quad + 0.5) * [rsize[0] / w0, rsize[1] / h0] - 0.5
        qsize /= shrink

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[0:2]

    # Pad.
    pad = (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    if enable_padding and max(pad) > border - 4:
        pad = tuple(int(p) for p in np.maximum(pad, int(np.rint(qsize * 0.3))))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(
            1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
            1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]),
        )
        arr += (_gaussian_blur(arr, qsize * 0.02) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + pad[:2]

    # Transform.
    size = resolution * supersample
    img = img.transform(
        (size, size),
        Image.Transform.QUAD,
        tuple((quad + 0.5).flatten()),
        Image.Resampling.BILINEAR,
    )
    if size != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return AlignedFace(
        image=np.asarray(img, dtype=np.uint8).copy(),
        transform=AlignTransform(quad=quad0, image_size=(w0, h0)),
        face=face if isinstance(face, Face) else None,
    )


def align_image(
    image: np.ndarray, resolution: int, *, face_index: int = 0, name: str = "<image>"
) -> tuple[AlignedFace, int]:
    """Detect, pick and align: :func:`detect_faces` → :func:`select_face` → :func:`align_face`.

    Args:
        image: ``uint8 [H, W, 3]`` RGB photo.
        resolution: output side ``R``.
        face_index: which face, in order of decreasing size (0 = the largest).
        name: the file name, for error messages.

    Returns:
        ``(aligned, faces_found)``: the :class:`AlignedFace` (``uint8 [R, R, 3]`` crop) and
        how many faces the photo has.

    Raises:
        NoFaceError, InputImageError, AlignmentUnavailableError: see the functions above.
    """
    faces = detect_faces(image, name=name)
    face = select_face(faces, face_index, name)
    return align_face(image, face, resolution), len(faces)


# ---------------------------------------------------------------------------------------------
# Paste-back


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def crop_mask(
    st: np.ndarray, *, feather: float = 0.15, shape: Literal["ellipse", "square"] = "ellipse"
) -> np.ndarray:
    """Blend weight in [0, 1] at normalised crop coordinates ``st`` ``[..., 2]``.

    ``"ellipse"``: the disc inscribed in the crop (it holds the whole face of an FFHQ crop,
    leaving the photo's own background in the corners); ``"square"``: the whole crop. The
    weight rises smoothly from 0 at the outline to 1 at ``feather`` × the crop's half side
    inside it (``feather=0``: a hard edge).
    """
    st = np.asarray(st, dtype=np.float64)
    if shape == "ellipse":
        inside = 1.0 - np.hypot(st[..., 0] - 0.5, st[..., 1] - 0.5) / 0.5
    elif shape == "square":
        inside = (
            np.minimum(
                np.minimum(st[..., 0], 1.0 - st[..., 0]), np.minimum(st[..., 1], 1.0 - st[..., 1])
            )
            / 0.5
        )
    else:
        raise ValueError(f"mask shape must be 'ellipse' or 'square', got {shape!r}")
    if feather <= 0:
        return (inside > 0).astype(np.float64)
    return _smoothstep(inside / feather)


def paste_back(
    original: np.ndarray,
    aligned_result: np.ndarray,
    transform: AlignTransform | dict[str, Any],
    *,
    feather: float = 0.15,
    shape: Literal["ellipse", "square"] = "ellipse",
) -> np.ndarray:
    """Warp an aligned-space result back into the photo and blend it in.

    Args:
        original: ``uint8 [H, W, 3]`` the photo the crop was made from (same size as
            ``transform.image_size``).
        aligned_result: ``uint8 [r, r, 3]`` an image in the crop's frame (the inversion, an
            edit, or the aligned crop itself), any square size ``r``.
        transform: the crop's :class:`AlignTransform` or its ``to_dict()``.
        feather: soft-edge width, a fraction of the crop's half side (see :func:`crop_mask`).
        shape: ``"ellipse"`` (default) or ``"square"`` blend mask.

    Returns:
        ``uint8 [H, W, 3]``: the photo with the result blended in; pixels outside the mask are
        exactly the original's.
    """
    if isinstance(transform, dict):
        transform = AlignTransform.from_dict(transform)
    original = np.asarray(original)
    result = np.asarray(aligned_result)
    if original.ndim != 3 or original.shape[2] != 3 or original.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W, 3] photo, got {original.dtype} {original.shape}")
    if result.ndim != 3 or result.shape[2] != 3 or result.shape[0] != result.shape[1]:
        raise ValueError(f"expected a square [r, r, 3] result, got shape {result.shape}")
    h, w = original.shape[:2]
    if (w, h) != tuple(transform.image_size):
        raise ValueError(
            f"photo is {w}×{h} but the alignment was made on a "
            f"{transform.image_size[0]}×{transform.image_size[1]} photo"
        )
    if result.dtype != np.uint8:
        raise ValueError(f"expected a uint8 result, got {result.dtype}")

    corners = np.asarray(transform.quad, dtype=np.float64) + 0.5
    x0 = max(int(math.floor(corners[:, 0].min())), 0)
    y0 = max(int(math.floor(corners[:, 1].min())), 0)
    x1 = min(int(math.ceil(corners[:, 0].max())), w)
    y1 = min(int(math.ceil(corners[:, 1].max())), h)
    out = original.copy()
    if x1 <= x0 or y1 <= y0:
        return out

    # Resample the result to about the crop's size in the photo first (antialiased when
    # shrinking, bicubic when enlarging), then warp it nearly 1:1 with a bilinear affine map.
    side = max(1, round(transform.side))
    res_img = Image.fromarray(np.ascontiguousarray(result))
    if side != result.shape[0]:
        res_img = res_img.resize(
            (side, side),
            Image.Resampling.LANCZOS if side < result.shape[0] else Image.Resampling.BICUBIC,
        )
    origin, m = transform._frame()
    inv = np.linalg.inv(m) * side  # photo corner coords → result pixel-corner coords
    shift = inv @ (np.array([x0, y0], dtype=np.float64) - origin)
    data = (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])
    warped = np.asarray(
        res_img.transform(
            (x1 - x0, y1 - y0), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    ys, xs = np.mgrid[y0:y1, x0:x1]
    st = transform.to_crop(np.stack([xs + 0.5, ys + 0.5], axis=-1))
    alpha = crop_mask(st, feather=feather, shape=shape)[..., None]
    region = original[y0:y1, x0:x1].astype(np.float64)
    blended = np.rint(region + (warped - region) * alpha)
    out[y0:y1, x0:x1] = np.where(alpha > 0, np.clip(blended, 0, 255), region).astype(np.uint8)
    return out
