"""Procedural renderer of labelled synthetic faces (the idinvert training domain).

idinvert trains its own small StyleGAN on CPU, without internet access and without any
pretrained GAN, so it needs a face-like image domain it can produce itself. This module draws
cartoon-like but varied faces with Pillow and numpy only (no torch):

* every face is fully described by a frozen :class:`FaceParams`, sampled by
  :func:`sample_params` from a ``numpy.random.Generator``; the same generator state gives the
  same face, and :func:`face_rng` derives a face's generator from ``(seed, index)`` so a data
  set is the same whatever its size;
* each attribute of :data:`ATTRIBUTES` has a continuous latent value (a field of
  :class:`FaceParams` with the attribute's name, roughly standard normal) and a binary label
  ``value > THRESHOLDS[name]`` (:func:`labels_of`); the renderer shows the attribute clearly on
  either side of the threshold, so a classifier can learn the label from pixels;
* :func:`render_face` draws at ``supersample`` times the output size and box-filters down
  (``Image.reduce``, an exact area average: the classic supersampling resolve), then applies
  smooth lighting and mild per-pixel noise at the output resolution. Any resolution from 8 px
  works; 64 px is the training resolution.

Face coordinates: ``(u, v)`` with the head's half-width as unit, ``u`` towards the image right,
``v`` downwards, origin at the head centre (about eye level); ``z`` is depth towards the viewer
and only matters for the head's yaw. A face's frame maps them to the image (position, scale,
roll), so faces stay roughly centred and aligned like FFHQ: eyes near 45% of the height, the
head (with hair) filling about 60% of the frame.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "ATTRIBUTES",
    "GLASSES_STYLES",
    "HAIR_STYLES",
    "SHIRT_STYLES",
    "THRESHOLDS",
    "FaceParams",
    "attribute_values",
    "default_supersample",
    "face_rng",
    "hair_rgb",
    "iter_faces",
    "labels_of",
    "landmarks",
    "render_dataset",
    "render_face",
    "render_face_array",
    "sample_params",
    "skin_rgb",
]

ATTRIBUTES: tuple[str, ...] = (
    "smile",
    "eyeglasses",
    "eyes_open",
    "dark_hair",
    "dark_skin",
    "yaw_right",
    "beard",
    "old",
)
"""Binary attributes, in label order. Each is also a float field of :class:`FaceParams`."""

THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {
        "smile": 0.0,  # 50% smiling (open, upturned mouth)
        "eyeglasses": 0.45,  # ~33% wear glasses
        "eyes_open": -0.45,  # ~67% open
        "dark_hair": -0.15,  # ~56% dark hair
        "dark_skin": 0.25,  # ~40% dark skin
        "yaw_right": 0.0,  # 50% turned towards the image right
        "beard": 0.5,  # ~31% bearded
        "old": 0.45,  # ~33% old (wrinkles, grey hair)
    }
)
"""Label of attribute ``a`` is ``int(params.a > THRESHOLDS[a])``; values are ~N(0, 1)."""

HAIR_STYLES: tuple[str, ...] = ("short", "sidepart", "bob", "long", "curly", "bun", "buzz")
SHIRT_STYLES: tuple[str, ...] = ("crew", "vneck", "collar")
GLASSES_STYLES: tuple[str, ...] = ("round", "square")

Color = tuple[float, float, float]
"""An RGB colour with channels in [0, 1]."""

_BASE_RADIUS = 0.215  # head half-width as a fraction of the frame at scale 1
_MAX_YAW = 0.55  # radians
_FACE_DEPTH = 0.7  # depth of the face surface relative to a sphere (flatter = smaller)
_EYE_HALF_WIDTH = 0.19
_BG_BLOBS = 4  # at most this many soft discs in the background

_SKIN_LIGHT: Color = (0.97, 0.82, 0.71)
_SKIN_MID: Color = (0.80, 0.59, 0.44)
_SKIN_DARK: Color = (0.40, 0.25, 0.16)
_HAIR_LIGHT: tuple[Color, ...] = (
    (0.93, 0.79, 0.50),  # blond
    (0.86, 0.47, 0.24),  # ginger
    (0.70, 0.52, 0.35),  # light brown
    (0.84, 0.80, 0.72),  # ash blond
)
_HAIR_DARK: tuple[Color, ...] = (
    (0.20, 0.13, 0.08),  # dark brown
    (0.24, 0.10, 0.06),  # auburn-black
    (0.15, 0.11, 0.08),  # brown-black
    (0.08, 0.08, 0.09),  # black
)
_IRIS: tuple[Color, ...] = (
    (0.42, 0.26, 0.12),
    (0.24, 0.14, 0.07),
    (0.28, 0.48, 0.74),
    (0.32, 0.54, 0.34),
    (0.50, 0.55, 0.60),
    (0.56, 0.45, 0.22),
)
_GLASSES: tuple[Color, ...] = (
    (0.06, 0.06, 0.07),
    (0.28, 0.16, 0.08),
    (0.78, 0.64, 0.30),
    (0.62, 0.10, 0.12),
    (0.12, 0.22, 0.55),
    (0.55, 0.57, 0.62),
)


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines one face. Rendering is a pure function of these values.

    Attribute values (``smile`` ... ``old``) are continuous latents, roughly N(0, 1); their
    labels come from :data:`THRESHOLDS`. Colours are RGB in [0, 1]. Lengths are in face units
    (head half-width = 1) unless noted; positions ``center_x``/``center_y`` are fractions of
    the frame.
    """

    # attribute latents (continuous; label = value > THRESHOLDS[name])
    smile: float
    eyeglasses: float
    eyes_open: float
    dark_hair: float
    dark_skin: float
    yaw_right: float
    beard: float
    old: float
    # placement in the frame
    center_x: float  # head centre, fraction of width (~0.5)
    center_y: float  # head centre (about eye level), fraction of height (~0.45)
    scale: float  # multiplies the base head half-width of 0.215 frames
    roll: float  # in-plane rotation, radians (positive = clockwise on screen)
    # head and features
    head_aspect: float  # head half-height / half-width
    jaw_width: float  # width of the jaw relative to the cheeks, (0, 1]
    eye_spacing: float  # |u| of the eye centres
    eye_size: float  # multiplies the base eye half-width 0.19
    eye_v: float  # v of the eye centres
    gaze_x: float  # iris offset, [-1, 1] of the free travel
    gaze_y: float
    iris_color: Color
    brow_thickness: float
    brow_gap: float  # eyebrow height above the eye centre
    brow_arch: float
    brow_tilt: float  # outer end raised (+) or lowered (-)
    nose_tip_v: float
    nose_width: float
    mouth_v: float
    mouth_width: float  # half-width of the mouth
    lip_fullness: float
    lip_redness: float  # [0, 1]
    ear_size: float
    neck_width: float  # half-width of the neck
    shoulder_width: float  # multiplies the base shoulder span
    blush: float  # [0, 1]
    skin_jitter: Color  # small per-channel offset added to the skin tone
    # hair
    hair_style: int  # index into HAIR_STYLES
    hair_hue: int  # index into the hair palettes (blond/ginger/brown/ash when light)
    hair_volume: float  # how far the hair stands off the head
    hair_part: float  # [-1, 1]: side of the parting / swoop
    fringe: float  # offset of the hairline, + = lower
    # accessories and clothes
    glasses_style: int  # index into GLASSES_STYLES
    glasses_color: Color
    glasses_thickness: float
    shirt_style: int  # index into SHIRT_STYLES
    shirt_color: Color
    # lighting, background, sensor
    light_x: float  # light direction (x right, y down, z = 1 towards the viewer)
    light_y: float
    light_strength: float  # [0, 1]: depth of the shading
    bg_color_a: Color
    bg_color_b: Color
    bg_angle: float  # gradient direction, radians
    bg_gradient: float  # gradient strength
    bg_texture: float  # amplitude of the low-frequency background texture
    bg_blobs: int  # number of soft discs in the background, 0..4
    noise_level: float  # per-pixel Gaussian noise sigma, in 8-bit units
    texture_seed: int  # seeds the background texture and the pixel noise


# --------------------------------------------------------------------------- sampling


def face_rng(seed: int, index: int) -> np.random.Generator:
    """Generator of face ``index`` of data set ``seed`` (independent of the data set size)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _color(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> Color:
    h = float(rng.uniform(0.0, 1.0))
    r, g, b = colorsys.hsv_to_rgb(h, float(rng.uniform(*s)), float(rng.uniform(*v)))
    return (r, g, b)


def _near_color(rng: np.random.Generator, base: Color) -> Color:
    h, s, v = colorsys.rgb_to_hsv(*base)
    h = (h + float(rng.normal(0.0, 0.08))) % 1.0
    s = float(np.clip(s + rng.normal(0.0, 0.15), 0.0, 1.0))
    v = float(np.clip(v + rng.normal(0.0, 0.2), 0.15, 1.0))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (r, g, b)


def _pick(rng: np.random.Generator, palette: Sequence[Color]) -> Color:
    return palette[int(rng.integers(len(palette)))]


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one random face. Uses ``rng`` only, so equal generator states give equal faces."""
    u = rng.uniform
    attrs = {name: float(rng.standard_normal()) for name in ATTRIBUTES}
    bg_a = _color(rng, (0.05, 0.55), (0.35, 0.95))
    return FaceParams(
        **attrs,
        center_x=0.5 + float(np.clip(rng.normal(0.0, 0.015), -0.04, 0.04)),
        center_y=0.45 + float(np.clip(rng.normal(0.0, 0.012), -0.03, 0.03)),
        scale=float(np.exp(np.clip(rng.normal(0.0, 0.05), -0.12, 0.12))),
        roll=float(np.clip(rng.normal(0.0, 0.05), -0.14, 0.14)),
        head_aspect=float(u(1.22, 1.38)),
        jaw_width=float(u(0.70, 0.92)),
        eye_spacing=float(u(0.37, 0.44)),
        eye_size=float(u(0.88, 1.15)),
        eye_v=float(u(-0.06, 0.03)),
        gaze_x=float(np.clip(rng.normal(0.0, 0.35), -1.0, 1.0)),
        gaze_y=float(np.clip(rng.normal(0.0, 0.3), -1.0, 1.0)),
        iris_color=_pick(rng, _IRIS),
        brow_thickness=float(u(0.05, 0.09)),
        brow_gap=float(u(0.22, 0.30)),
        brow_arch=float(u(0.0, 0.07)),
        brow_tilt=float(u(-0.04, 0.05)),
        nose_tip_v=float(u(0.30, 0.40)),
        nose_width=float(u(0.09, 0.15)),
        mouth_v=float(u(0.68, 0.78)),
        mouth_width=float(u(0.25, 0.33)),
        lip_fullness=float(u(0.035, 0.065)),
        lip_redness=float(u(0.0, 1.0)),
        ear_size=float(u(0.85, 1.15)),
        neck_width=float(u(0.36, 0.47)),
        shoulder_width=float(u(0.9, 1.1)),
        blush=float(u(0.0, 1.0)),
        skin_jitter=(float(u(-0.03, 0.03)), float(u(-0.03, 0.03)), float(u(-0.03, 0.03))),
        hair_style=int(rng.integers(len(HAIR_STYLES))),
        hair_hue=int(rng.integers(len(_HAIR_LIGHT))),
        hair_volume=float(u(0.04, 0.16)),
        hair_part=float(u(-1.0, 1.0)),
        fringe=float(u(-0.06, 0.06)),
        glasses_style=int(rng.integers(len(GLASSES_STYLES))),
        glasses_color=_pick(rng, _GLASSES),
        glasses_thickness=float(u(0.7, 1.3)),
        shirt_style=int(rng.integers(len(SHIRT_STYLES))),
        shirt_color=_color(rng, (0.15, 0.9), (0.2, 0.95)),
        light_x=float(u(-0.8, 0.8)),
        light_y=float(u(-0.8, 0.1)),
        light_strength=float(u(0.25, 0.6)),
        bg_color_a=bg_a,
        bg_color_b=_near_color(rng, bg_a),
        bg_angle=float(u(0.0, 2.0 * math.pi)),
        bg_gradient=float(u(0.0, 1.2)),
        bg_texture=float(u(0.0, 0.12)),
        bg_blobs=int(rng.integers(_BG_BLOBS + 1)),
        noise_level=float(u(0.5, 4.0)),
        texture_seed=int(rng.integers(2**31 - 1)),
    )


# --------------------------------------------------------------------------- labels


def attribute_values(params: FaceParams) -> dict[str, float]:
    """Continuous latent value of every attribute, in :data:`ATTRIBUTES` order."""
    return {name: float(getattr(params, name)) for name in ATTRIBUTES}


def labels_of(params: FaceParams) -> dict[str, int]:
    """Binary label (0/1) of every attribute: ``int(value > THRESHOLDS[name])``."""
    return {name: int(getattr(params, name) > THRESHOLDS[name]) for name in ATTRIBUTES}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _lerp(a: Color, b: Color, t: float) -> Color:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _scale(c: Color, k: float) -> Color:
    return (c[0] * k, c[1] * k, c[2] * k)


def _clip01(c: Color) -> Color:
    return (min(max(c[0], 0.0), 1.0), min(max(c[1], 0.0), 1.0), min(max(c[2], 0.0), 1.0))


def _age(params: FaceParams) -> float:
    """Strength of the ageing cues in [0, 1]: 0 when not old, >= 0.55 when old."""
    excess = params.old - THRESHOLDS["old"]
    return 0.0 if excess <= 0 else min(1.0, 0.55 + 0.3 * excess)


def skin_rgb(params: FaceParams) -> Color:
    """Base skin colour (RGB in [0, 1]), from ``dark_skin`` plus the face's small jitter."""
    t = _sigmoid(2.5 * (params.dark_skin - THRESHOLDS["dark_skin"]))
    if t < 0.5:
        base = _lerp(_SKIN_LIGHT, _SKIN_MID, 2.0 * t)
    else:
        base = _lerp(_SKIN_MID, _SKIN_DARK, 2.0 * t - 1.0)
    j = params.skin_jitter
    return _clip01((base[0] + j[0], base[1] + j[1], base[2] + j[2]))


def hair_rgb(params: FaceParams) -> Color:
    """Hair colour (RGB in [0, 1]): lightness from ``dark_hair``, greyed by ``old``."""
    t = _sigmoid(3.0 * (params.dark_hair - THRESHOLDS["dark_hair"]))
    hue = params.hair_hue % len(_HAIR_LIGHT)
    c = _lerp(_HAIR_LIGHT[hue], _HAIR_DARK[hue], t)
    grey = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] + 0.06
    return _clip01(_lerp(c, (grey, grey, grey), 0.85 * _age(params)))


def _yaw(params: FaceParams) -> float:
    """Head yaw in radians; positive turns the face towards the image right."""
    return _MAX_YAW * math.tanh(0.75 * params.yaw_right)


# --------------------------------------------------------------------------- geometry


class _Frame:
    """Maps face coordinates ``(u, v, z)`` to pixel coordinates of a ``size``-pixel canvas."""

    def __init__(self, params: FaceParams, size: float) -> None:
        self.h = params.head_aspect
        self.cx = params.center_x * size
        self.cy = params.center_y * size
        self.r = params.scale * _BASE_RADIUS * size  # pixels per face unit
        self.cos_r, self.sin_r = math.cos(params.roll), math.sin(params.roll)
        yaw = _yaw(params)
        self.cos_y, self.sin_y = math.cos(yaw), math.sin(yaw)

    def depth(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Depth of the (flattened) head ellipsoid's front at ``(u, v)``; 0 outside the head."""
        vh = v / self.h
        return _FACE_DEPTH * np.sqrt(np.maximum(1.0 - u * u - vh * vh, 0.0))

    def xy(
        self,
        u: np.ndarray | float,
        v: np.ndarray | float,
        z: np.ndarray | float | None = None,
        dz: np.ndarray | float = 0.0,
    ) -> list[float]:
        """Flat ``[x0, y0, x1, y1, ...]`` pixel coordinates of face points.

        ``z`` defaults to the head surface depth plus ``dz`` (features on the face); pass
        ``z=0`` for points on the silhouette plane (outlines, body).
        """
        u_a = np.asarray(u, dtype=float)
        v_a = np.asarray(v, dtype=float)
        if u_a.shape != v_a.shape:
            u_a, v_a = np.broadcast_arrays(u_a, v_a)
        z_a = self.depth(u_a, v_a) + dz if z is None else z
        uy = u_a * self.cos_y + z_a * self.sin_y
        out = np.empty((*u_a.shape, 2))
        out[..., 0] = self.cx + self.r * (uy * self.cos_r - v_a * self.sin_r)
        out[..., 1] = self.cy + self.r * (uy * self.sin_r + v_a * self.cos_r)
        return out.ravel().tolist()

    def width(self, w: float) -> int:
        """Line width in pixels for a face-unit width ``w`` (at least 1)."""
        return max(1, round(w * self.r))


@lru_cache(maxsize=64)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


@lru_cache(maxsize=64)
def _span(start: float, stop: float, n: int) -> np.ndarray:
    """Cached ``np.linspace(start, stop, n)`` (read-only)."""
    out = np.linspace(start, stop, n)
    out.flags.writeable = False
    return out


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 24) -> tuple:
    """Ellipse outline ``(u, v)`` with ``n`` points."""
    cos_t, sin_t = _unit_circle(n)
    return cu + ru * cos_t, cv + rv * sin_t


def _u8(x: float) -> int:
    return 0 if x <= 0.0 else 255 if x >= 1.0 else int(x * 255.0 + 0.5)


def _rgb(c: Color, alpha: float | None = None) -> tuple[int, ...]:
    if alpha is None:
        return (_u8(c[0]), _u8(c[1]), _u8(c[2]))
    return (_u8(c[0]), _u8(c[1]), _u8(c[2]), _u8(alpha))


@dataclass
class _Canvas:
    """Supersampled foreground: colour (on black, i.e. premultiplied) plus coverage mask."""

    img: Image.Image
    mask: Image.Image
    draw: ImageDraw.ImageDraw
    mdraw: ImageDraw.ImageDraw
    f: _Frame

    @classmethod
    def new(cls, params: FaceParams, size: int) -> _Canvas:
        img = Image.new("RGB", (size, size), (0, 0, 0))
        mask = Image.new("L", (size, size), 0)
        draw, mdraw = ImageDraw.Draw(img, "RGBA"), ImageDraw.Draw(mask)
        return cls(img, mask, draw, mdraw, _Frame(params, size))

    def solid(self, pts: list[float], color: Color) -> None:
        """Opaque polygon that also extends the foreground coverage."""
        self.draw.polygon(pts, fill=_rgb(color))
        self.mdraw.polygon(pts, fill=255)

    def poly(self, pts: list[float], color: Color, alpha: float = 1.0) -> None:
        """Polygon inside already-covered foreground (blended with ``alpha``)."""
        self.draw.polygon(pts, fill=_rgb(color, alpha))

    def line(self, pts: list[float], color: Color, width: float, alpha: float = 1.0) -> None:
        """Polyline of face-unit ``width`` inside covered foreground."""
        self.draw.line(pts, fill=_rgb(color, alpha), width=self.f.width(width), joint="curve")


# --------------------------------------------------------------------------- body and head


def _head_outline(p: FaceParams, n: int = 72) -> tuple:
    """Head silhouette ``(u, v, z)``; the chin narrows with ``jaw_width`` and follows the yaw."""
    cos_t, sin_t = _unit_circle(n)
    low = np.maximum(sin_t, 0.0)
    u = cos_t * (1.0 - (1.0 - p.jaw_width) * low**1.5)
    v = p.head_aspect * sin_t
    return u, v, 0.3 * low**2


def _neckline(p: FaceParams, u: np.ndarray) -> np.ndarray:
    """``v`` of the shirt's neckline at ``u`` (|u| <= 0.62)."""
    x = np.clip(np.abs(u) / 0.62, 0.0, 1.0)
    style = SHIRT_STYLES[p.shirt_style % len(SHIRT_STYLES)]
    if style == "crew":
        return 1.85 + 0.14 * (1.0 - x**2)
    depth = 0.5 if style == "vneck" else 0.32
    return 1.85 + depth * (1.0 - x)


def _draw_body(c: _Canvas, p: FaceParams) -> None:
    """Shoulders/shirt, then the neck whose lower edge forms the neckline."""
    f, sw = c.f, p.shoulder_width
    t = _span(0.0, 1.0, 10)
    # quadratic Bezier from the neck base over the shoulder down the arm
    p0, p1, p2 = np.array([0.72, 1.8]), np.array([1.9 * sw, 1.85]), np.array([2.7 * sw, 2.8])
    curve = (1 - t)[:, None] ** 2 * p0 + 2 * ((1 - t) * t)[:, None] * p1 + (t**2)[:, None] * p2
    right_u = np.concatenate([curve[:, 0], [3.2 * sw]])
    right_v = np.concatenate([curve[:, 1], [4.0]])
    u = np.concatenate([-right_u[::-1], right_u])
    v = np.concatenate([right_v[::-1], right_v])
    shirt = p.shirt_color
    c.solid(f.xy(u, v, 0.0), shirt)
    # neck, widening to the neckline
    nu = _span(0.62, -0.62, 13)
    neck_u = np.concatenate([[-p.neck_width, p.neck_width], nu])
    neck_v = np.concatenate([[0.5 * p.head_aspect, 0.5 * p.head_aspect], _neckline(p, nu)])
    skin = skin_rgb(p)
    c.solid(f.xy(neck_u, neck_v, 0.0), _scale(skin, 0.93))
    trim = _scale(shirt, 0.75)
    c.line(f.xy(nu, _neckline(p, nu), 0.0), trim, 0.06)
    if SHIRT_STYLES[p.shirt_style % len(SHIRT_STYLES)] == "collar":
        collar = _lerp(shirt, (1.0, 1.0, 1.0), 0.7)
        for s in (-1.0, 1.0):
            cu = np.array([0.05, 0.62, 0.78, 0.52]) * s
            cv = np.array([_neckline(p, np.array([0.05]))[0], 1.80, 1.92, 2.3])
            c.poly(f.xy(cu, cv, 0.0), collar)
    # shadow cast by the chin on the neck
    sh_u, sh_v = _ellipse(0.0, p.head_aspect * 0.98, p.neck_width * 0.97, 0.32)
    c.poly(f.xy(sh_u, sh_v, 0.0), (0.1, 0.05, 0.05), 0.28)


def _draw_ears(c: _Canvas, p: FaceParams) -> None:
    skin = skin_rgb(p)
    for s in (-1.0, 1.0):
        eu, ev = _ellipse(s * 1.0, p.eye_v + 0.14, 0.15 * p.ear_size, 0.26 * p.ear_size, 20)
        c.solid(c.f.xy(eu, ev, -0.12), _scale(skin, 0.92))
        iu, iv = _ellipse(s * 1.03, p.eye_v + 0.15, 0.07 * p.ear_size, 0.15 * p.ear_size, 12)
        c.poly(c.f.xy(iu, iv, -0.12), _scale(skin, 0.72), 0.8)


def _draw_head(c: _Canvas, p: FaceParams) -> None:
    u, v, z = _head_outline(p)
    c.solid(c.f.xy(u, v, z), skin_rgb(p))


# --------------------------------------------------------------------------- hair


def _hair_geometry(p: FaceParams) -> dict[str, float]:
    style = HAIR_STYLES[p.hair_style % len(HAIR_STYLES)]
    vol = 0.02 if style == "buzz" else p.hair_volume
    if style == "curly":
        vol += 0.12
    return {"vol": vol, "top": vol + (0.08 if style in ("short", "sidepart") else 0.0)}


def _fringe_v(p: FaceParams, u: np.ndarray, sideburn_v: float) -> np.ndarray:
    """``v`` of the hairline across the forehead at ``u`` (|u| <= 0.88)."""
    style = HAIR_STYLES[p.hair_style % len(HAIR_STYLES)]
    h = p.head_aspect
    f0 = -0.6 * h + p.fringe
    side = 1.0 if p.hair_part >= 0 else -1.0
    if style == "sidepart":
        base = f0 - 0.06 + 0.3 * (1.0 - (u * side + 1.0) / 2.0)
    elif style == "bob":
        base = -0.34 * h + p.fringe + 0.02 * np.abs(np.sin(14.0 * u))
    elif style == "long":
        base = -0.74 * h + 0.38 * np.abs(u - 0.25 * p.hair_part) ** 1.2
    elif style == "curly":
        base = f0 + 0.06 + 0.05 * np.sin(13.0 * u + 3.0 * p.hair_part)
    elif style in ("bun", "buzz"):
        base = f0 - 0.08 + 0.1 * u**2
    else:  # short
        base = f0 + 0.04 * np.abs(np.sin(9.0 * u + p.hair_part))
    w = (np.abs(u) / 0.88) ** 6
    return base + (sideburn_v - base) * w


def _cap_outline(p: FaceParams, g: dict[str, float]) -> tuple:
    """Hair cap (top of the head down to the sideburns) as ``(u, v, z)``."""
    h, vol = p.head_aspect, g["vol"]
    sb = 0.3
    t = _span(math.pi - sb, 2.0 * math.pi + sb, 40)
    up = np.clip(-np.sin(t), 0.0, 1.0)
    bump = 0.05 * np.sin(11.0 * t) if HAIR_STYLES[p.hair_style % len(HAIR_STYLES)] == "curly" else 0
    ou = (1.0 + vol + bump) * np.cos(t)
    ov = (h + g["top"] * up + bump) * np.sin(t)
    sideburn_v = h * math.sin(sb) * 0.8
    iu = _span(0.88, -0.88, 33)
    iv = _fringe_v(p, iu, sideburn_v)
    dz = _FACE_DEPTH * np.sqrt(np.maximum(1.0 - iu**2 - (iv / h) ** 2, 0.0))
    return np.concatenate([ou, iu]), np.concatenate([ov, iv]), np.concatenate([0 * ou, dz])


def _back_outline(p: FaceParams, g: dict[str, float]) -> tuple | None:
    """Hair behind the head (bob/long/curly/bun) as ``(u, v)`` on the silhouette plane."""
    style = HAIR_STYLES[p.hair_style % len(HAIR_STYLES)]
    h, vol = p.head_aspect, g["vol"]
    if style == "curly":
        t = np.linspace(0.0, 2.0 * math.pi, 60, endpoint=False)
        r = 1.0 + 0.05 * np.sin(9.0 * t + 4.0 * p.hair_part)
        return (1.3 + vol) * r * np.cos(t), -0.3 + (h + 0.2 + vol) * r * np.sin(t)
    if style == "bun":
        return _ellipse(0.25 * p.hair_part, -h - g["top"] - 0.18, 0.36, 0.3)
    if style not in ("bob", "long"):
        return None
    t = _span(math.pi, 2.0 * math.pi, 24)
    arc_u = (1.0 + vol + 0.04) * np.cos(t)
    arc_v = (h + g["top"] + 0.04) * np.sin(t)
    if style == "bob":
        side_u = np.array([1.1 + vol, 1.16 + vol])
        side_v = np.array([0.5 * h, 0.95 * h])
    else:
        side_u = np.array([1.12 + vol, 1.28 + vol, 1.45 + vol])
        side_v = np.array([0.8 * h, 1.7, 2.5])
    bottom_u = np.array([0.5, -0.5]) * side_u[-1]
    bottom_v = np.full(2, side_v[-1] - 0.08)
    u = np.concatenate([arc_u, side_u, bottom_u, -side_u[::-1]])
    v = np.concatenate([arc_v, side_v, bottom_v, side_v[::-1]])
    return u, v


def _draw_hair_back(c: _Canvas, p: FaceParams) -> None:
    out = _back_outline(p, _hair_geometry(p))
    if out is not None:
        c.solid(c.f.xy(out[0], out[1], 0.0), _scale(hair_rgb(p), 0.85))


def _draw_hair_cap(c: _Canvas, p: FaceParams) -> None:
    g = _hair_geometry(p)
    u, v, z = _cap_outline(p, g)
    hair = hair_rgb(p)
    pts = c.f.xy(u, v, z)
    if HAIR_STYLES[p.hair_style % len(HAIR_STYLES)] == "buzz":
        c.poly(pts, hair, 0.7)
        return
    c.solid(pts, hair)
    # strands: from the crown down to the hairline, darker and lighter
    n_out = 40
    crown_u, crown_v = 0.3 * p.hair_part, -p.head_aspect - 0.4 * g["top"]
    ends_u, ends_v = u[n_out + 2 : -2 : 3], v[n_out + 2 : -2 : 3]
    su = np.stack([np.full_like(ends_u, crown_u), 0.54 * (crown_u + ends_u), ends_u], axis=1)
    sv = np.stack(
        [np.full_like(ends_v, crown_v), 0.5 * (crown_v + ends_v) - 0.05, ends_v - 0.04], axis=1
    )
    pts = c.f.xy(su, sv, 0.0)  # one call for all strands: 6 numbers per strand
    dark, light = _clip01(_scale(hair, 0.72)), _clip01(_scale(hair, 1.2))
    for k in range(len(ends_u)):
        c.line(pts[6 * k : 6 * k + 6], dark if k % 2 == 0 else light, 0.025, 0.55)


# --------------------------------------------------------------------------- face features


def _eye_curves(p: FaceParams, s: float, aperture: float, n: int = 15) -> tuple:
    """Upper and lower lid ``v`` over ``u`` for the eye on side ``s`` (-1 left, +1 right)."""
    ew = _EYE_HALF_WIDTH * p.eye_size
    x = _span(-1.0, 1.0, n)
    u = s * p.eye_spacing + ew * x
    eh = ew * 0.78 * aperture
    tilt = -0.03 * s * x  # outer corners slightly higher
    upper = p.eye_v - eh * (1.0 - x**2) ** 0.7 + tilt
    lower = p.eye_v + 0.7 * eh * (1.0 - x**2) ** 0.9 + tilt
    return u, upper, lower


def _clamped_disc(
    cu: float, cv: float, r: float, u: np.ndarray, upper: np.ndarray, lower: np.ndarray
) -> tuple:
    """A disc intersected with the eye opening between the ``upper`` and ``lower`` lids."""
    du, dv = _ellipse(cu, cv, r, r, 20)
    du = np.clip(du, u.min(), u.max())
    lo, hi = np.interp(du, u, upper), np.interp(du, u, lower)
    return du, np.clip(dv, lo, hi)


def _draw_eyes(c: _Canvas, p: FaceParams) -> None:
    f, ew = c.f, _EYE_HALF_WIDTH * p.eye_size
    lid = (0.12, 0.08, 0.07)
    smile_squint = 1.0 - 0.2 * max(0.0, math.tanh(p.smile))
    excess = p.eyes_open - THRESHOLDS["eyes_open"]
    for s in (-1.0, 1.0):
        if excess <= 0:  # closed: a downward-curved lid line with lashes
            u, _, lower = _eye_curves(p, s, 0.35)
            c.line(f.xy(u, lower), lid, 0.05)
            for x in (-0.45, 0.0, 0.45):
                lu = s * p.eye_spacing + ew * np.array([x, x * 1.15])
                lv = np.interp(lu[0], u, lower) + np.array([0.0, 0.06])
                c.line(f.xy(lu, lv), lid, 0.025)
            continue
        aperture = min(1.0, 0.55 + 0.3 * excess) * smile_squint
        u, upper, lower = _eye_curves(p, s, aperture)
        c.poly(
            f.xy(np.concatenate([u, u[::-1]]), np.concatenate([upper, lower[::-1]])),
            (0.96, 0.95, 0.92),
        )
        ri = ew * 0.52
        travel = ew - ri
        yaw_gaze = 0.6 * math.sin(_yaw(p)) / _MAX_YAW
        iu = s * p.eye_spacing + travel * float(np.clip(0.6 * p.gaze_x + yaw_gaze, -1.0, 1.0))
        iv = p.eye_v + 0.25 * ri * p.gaze_y
        c.poly(f.xy(*_clamped_disc(iu, iv, ri, u, upper, lower)), p.iris_color)
        c.poly(f.xy(*_clamped_disc(iu, iv, ri * 0.48, u, upper, lower)), (0.04, 0.03, 0.03))
        hu, hv = iu + 0.35 * ri * p.light_x, iv - 0.35 * ri * (1.0 - p.light_y) * 0.5
        c.poly(f.xy(*_clamped_disc(hu, hv, ri * 0.22, u, upper, lower)), (1.0, 1.0, 1.0), 0.9)
        c.line(f.xy(u, upper), lid, 0.045)
        c.line(
            f.xy(u[-5:] if s > 0 else u[:5], (upper[-5:] if s > 0 else upper[:5]) - 0.01),
            lid,
            0.035,
        )
        c.line(f.xy(u[2:-2], lower[2:-2]), _scale(skin_rgb(p), 0.6), 0.02, 0.6)


def _draw_brows(c: _Canvas, p: FaceParams) -> None:
    hair = hair_rgb(p)
    color = _lerp(hair, (0.1, 0.07, 0.05), 0.35)
    x = _span(-1.0, 1.0, 11)
    half = 0.5 * p.brow_thickness * (1.0 - 0.35 * (x + 1.0) / 2.0)
    lift = 0.03 * max(0.0, math.tanh(p.smile))
    for s in (-1.0, 1.0):
        u = s * (p.eye_spacing + 0.02 + 0.21 * x)
        v = p.eye_v - p.brow_gap - lift - p.brow_arch * (1.0 - x**2) - p.brow_tilt * x
        pts = c.f.xy(np.concatenate([u, u[::-1]]), np.concatenate([v - half, (v + half)[::-1]]))
        c.poly(pts, color)


def _draw_nose(c: _Canvas, p: FaceParams) -> None:
    f, skin = c.f, skin_rgb(p)
    dark = _scale(skin, 0.55)
    tip, w = p.nose_tip_v, p.nose_width
    x = _span(-1.0, 1.0, 9)
    # bridge line on the side away from the light
    s = -1.0 if p.light_x >= 0 else 1.0
    bu = np.array([s * 0.07, s * 0.09, s * w * 0.9])
    bv = np.array([p.eye_v + 0.1, tip - 0.12, tip - 0.03])
    c.line(f.xy(bu, bv, dz=np.array([0.12, 0.2, 0.22])), dark, 0.025, 0.45)
    # base of the nose and the nostrils
    nu, nv = w * x, tip + 0.05 * (1.0 - x**2) - 0.03
    c.line(f.xy(nu, nv, dz=0.25), dark, 0.03, 0.75)
    for side in (-1.0, 1.0):
        ou, ov = _ellipse(side * 0.5 * w, tip + 0.005, 0.035, 0.02, 10)
        c.poly(f.xy(ou, ov, dz=0.25), _scale(skin, 0.35), 0.8)
    hu, hv = _ellipse(0.02 * p.light_x, tip - 0.06, 0.05, 0.035, 10)
    c.poly(f.xy(hu, hv, dz=0.3), (1.0, 1.0, 1.0), 0.25)


def _lip_color(p: FaceParams) -> Color:
    skin = skin_rgb(p)
    return _scale(_lerp(skin, (0.78, 0.28, 0.30), 0.3 + 0.35 * p.lip_redness), 0.9)


def _draw_mouth(c: _Canvas, p: FaceParams) -> None:
    f = c.f
    curve = math.tanh(1.1 * p.smile)
    mw = p.mouth_width * (1.0 + 0.25 * max(0.0, curve))
    x = _span(-1.0, 1.0, 17)
    u = mw * x
    lift = (0.14 if curve > 0 else 0.06) * curve * x**2  # smile lifts corners, frown lowers
    lip = _lip_color(p)
    if p.smile > THRESHOLDS["smile"]:
        opening = 0.1 + 0.14 * math.tanh(0.9 * p.smile + 0.2)
        upper = p.mouth_v - lift - 0.01 * (1.0 - x**2)
        lower = upper + opening * (1.0 - x**2) ** 0.9
        c.poly(
            f.xy(np.concatenate([u, u[::-1]]), np.concatenate([upper, lower[::-1]]), dz=0.05),
            (0.36, 0.08, 0.10),
        )
        teeth = upper + np.minimum(0.45 * (lower - upper), 0.07)
        c.poly(
            f.xy(np.concatenate([u, u[::-1]]), np.concatenate([upper, teeth[::-1]]), dz=0.05),
            (0.95, 0.93, 0.88),
        )
        c.line(f.xy(u, upper - 0.01, dz=0.05), lip, 0.035)
        c.line(f.xy(u[1:-1], lower[1:-1] + 0.015, dz=0.05), lip, 0.045)
        return
    mid = p.mouth_v - lift
    bow = 0.02 * np.exp(-((x / 0.15) ** 2))
    top = mid - p.lip_fullness * (1.0 - x**2) ** 0.7 + bow
    bottom = mid + 1.3 * p.lip_fullness * (1.0 - x**2) ** 0.8
    c.poly(f.xy(np.concatenate([u, u[::-1]]), np.concatenate([top, bottom[::-1]]), dz=0.05), lip)
    c.line(f.xy(u, mid, dz=0.05), (0.25, 0.08, 0.08), 0.025, 0.9)


def _draw_beard(c: _Canvas, p: FaceParams) -> None:
    excess = p.beard - THRESHOLDS["beard"]
    if excess <= 0:
        return
    alpha = min(1.0, 0.7 + 0.25 * excess)
    ou, ov, oz = _head_outline(p, 72)
    keep = (ov > 0.0) & (np.abs(ou) < 0.97)  # lower half, chin side
    ou, ov, oz = ou[keep], ov[keep], oz[keep]
    order = np.argsort(-ou)  # right -> left along the jaw
    ou, ov, oz = ou[order], ov[order], oz[order]
    tip = p.nose_tip_v
    iu = np.array([-0.95, -0.72, -0.45, -0.14, 0.0, 0.14, 0.45, 0.72, 0.95])
    iv = np.array(
        [0.12, 0.42, tip + 0.14, tip + 0.09, tip + 0.1, tip + 0.09, tip + 0.14, 0.42, 0.12]
    )
    iz = c.f.depth(iu, iv)
    pts = c.f.xy(np.concatenate([ou, iu]), np.concatenate([ov, iv]), np.concatenate([oz, iz]))
    c.poly(pts, _scale(hair_rgb(p), 0.9), alpha)


def _draw_cheeks_and_age(c: _Canvas, p: FaceParams) -> None:
    f, skin = c.f, skin_rgb(p)
    blush = 0.12 * p.blush + 0.1 * max(0.0, math.tanh(p.smile))
    for s in (-1.0, 1.0):
        bu, bv = _ellipse(s * 0.56, p.nose_tip_v + 0.02, 0.19, 0.11, 16)
        c.poly(f.xy(bu, bv), (0.9, 0.35, 0.35), blush)
    age = _age(p)
    if age <= 0:
        return
    wr, a = _scale(skin, 0.55), 0.75 * age
    x = _span(-1.0, 1.0, 9)
    for k in range(2):  # forehead lines
        fv = p.eye_v - p.brow_gap - 0.16 - 0.09 * k - 0.03 * (1.0 - x**2)
        c.line(f.xy(0.32 * x, fv), wr, 0.022, a)
    for s in (-1.0, 1.0):
        # nasolabial folds, eye bags, crow's feet
        fu = s * np.array([p.nose_width + 0.08, p.nose_width + 0.16, p.mouth_width + 0.1])
        fv = np.array([p.nose_tip_v - 0.02, p.nose_tip_v + 0.2, p.mouth_v + 0.1])
        c.line(f.xy(fu, fv), wr, 0.026, a)
        bu = s * p.eye_spacing + 0.13 * x
        bv = p.eye_v + 0.13 + 0.04 * (1.0 - x**2)
        c.line(f.xy(bu, bv), wr, 0.02, 0.8 * a)
        cu = s * (p.eye_spacing + 0.2) + s * np.array([0.0, 0.09])
        for dv in (-0.04, 0.02):
            c.line(f.xy(cu, p.eye_v + np.array([0.0, dv * 1.5]) + dv), wr, 0.018, a)


def _draw_glasses(c: _Canvas, p: FaceParams) -> None:
    excess = p.eyeglasses - THRESHOLDS["eyeglasses"]
    if excess <= 0:
        return
    f, col = c.f, p.glasses_color
    width = 0.05 * p.glasses_thickness
    tint = min(0.85, max(0.0, 1.1 * (excess - 1.0)))
    round_frames = GLASSES_STYLES[p.glasses_style % len(GLASSES_STYLES)] == "round"
    ru, rv = (0.24, 0.22) if round_frames else (0.26, 0.18)
    power = 2.0 if round_frames else 4.5  # superellipse exponent: 4.5 = rounded rectangle
    cs, sn = _unit_circle(32)
    ex = np.sign(cs) * np.abs(cs) ** (2.0 / power)
    ey = np.sign(sn) * np.abs(sn) ** (2.0 / power)
    cv = p.eye_v - 0.01
    for s in (-1.0, 1.0):
        cu = s * p.eye_spacing
        pts = f.xy(cu + ru * ex, cv + rv * ey, dz=0.1)
        if tint > 0:
            c.poly(pts, (0.05, 0.05, 0.08), tint)
        else:
            glint_u = cu + ru * np.array([-0.5, 0.1])
            c.line(
                f.xy(glint_u, cv + rv * np.array([0.4, -0.5]), dz=0.1), (1.0, 1.0, 1.0), 0.03, 0.3
            )
        c.line(pts + pts[:2], col, width)
        tu = s * np.array([p.eye_spacing + ru, 0.98])
        c.line(f.xy(tu, np.array([cv - 0.3 * rv, cv - 0.05]), dz=0.05), col, width)
    bu = np.array([-p.eye_spacing + ru * 0.95, 0.0, p.eye_spacing - ru * 0.95])
    bv = np.array([cv - 0.2 * rv, cv - 0.35 * rv, cv - 0.2 * rv])
    c.line(f.xy(bu, bv, dz=0.15), col, width)


# --------------------------------------------------------------------------- pixels


@lru_cache(maxsize=8)
def _pixel_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)``, each (R, R) float in [0, R) (read-only, cached)."""
    c = np.arange(resolution, dtype=np.float64) + 0.5
    x, y = np.meshgrid(c, c)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@lru_cache(maxsize=16)
def _smooth_upsampler(cells: int, resolution: int) -> np.ndarray:
    """(R, cells) matrix that smoothly interpolates a ``cells``-point grid over R pixels.

    Gaussian weights around grid points spaced ``1 / cells`` apart, rows normalised to 1;
    ``A @ G @ A.T`` turns a (cells, cells) grid ``G`` into an (R, R) smooth field.
    """
    x = (np.arange(resolution) + 0.5) / resolution
    centres = (np.arange(cells) + 0.5) / cells
    w = np.exp(-(((x[:, None] - centres[None, :]) * cells) ** 2))
    w /= w.sum(axis=1, keepdims=True)
    w.flags.writeable = False
    return w


def _background(p: FaceParams, resolution: int) -> np.ndarray:
    """Background (R, R, 3) float32 in [0, 1]: two-colour gradient, soft texture, soft discs."""
    x, y = _pixel_grid(resolution)
    ca, sa = math.cos(p.bg_angle) / resolution, math.sin(p.bg_angle) / resolution
    t = np.clip((x * ca + y * sa - 0.5 * (ca + sa) * resolution) * p.bg_gradient + 0.5, 0, 1)
    rng = np.random.default_rng(p.texture_seed)
    tex = np.zeros((resolution, resolution))
    for cells, weight in ((4, 1.0), (9, 0.5)):
        interp = _smooth_upsampler(cells, resolution)
        # einsum, not a BLAS matmul: no thread pool fighting the data-loader workers
        tex += weight * np.einsum("ik,jk->ij", interp @ rng.standard_normal((cells, cells)), interp)
    tex = (1.0 + p.bg_texture * tex).astype(np.float32)
    glow = np.zeros((resolution, resolution), dtype=np.float32)
    for bx, by, br, bs, bc in rng.uniform(0.0, 1.0, size=(_BG_BLOBS, 5))[: p.bg_blobs]:
        radius = (0.05 + 0.15 * br) * resolution  # pixels
        cx, cy = bx * resolution, by * resolution
        x0, x1 = max(0, int(cx - radius)), min(resolution, int(cx + radius) + 1)
        y0, y1 = max(0, int(cy - radius)), min(resolution, int(cy + radius) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        d = np.hypot(x[y0:y1, x0:x1] - cx, y[y0:y1, x0:x1] - cy) / radius
        sign = 1.0 if bc > 0.5 else -1.0
        glow[y0:y1, x0:x1] += sign * (0.05 + 0.1 * bs) * np.clip(1.5 - 1.5 * d, 0.0, 1.0)
    a = np.asarray(p.bg_color_a, dtype=np.float32)
    b = np.asarray(p.bg_color_b, dtype=np.float32)
    bg = (a + (b - a) * t.astype(np.float32)[..., None]) * tex[..., None] + glow[..., None]
    return np.clip(bg, 0.0, 1.0)


def _shading(p: FaceParams, resolution: int) -> np.ndarray:
    """Lighting factor (R, R) float in about [0.4, 1.2] for the foreground.

    The head is lit as an ellipsoid (beyond its silhouette: as its rim, which also shades the
    hair), the body below the chin as a wide vertical cylinder.
    """
    f = _Frame(p, resolution)
    x, y = _pixel_grid(resolution)
    dx, dy = (x - f.cx) / f.r, (y - f.cy) / f.r
    u = dx * f.cos_r + dy * f.sin_r
    v = -dx * f.sin_r + dy * f.cos_r
    light = np.array([p.light_x, p.light_y, 1.0])
    light /= np.linalg.norm(light)
    hu, hv = u, v / f.h
    rr = np.maximum(np.hypot(hu, hv), 1e-6)
    outside = rr > 1.0
    nu, nv = np.where(outside, hu / rr, hu), np.where(outside, hv / rr, hv)
    nz = np.sqrt(np.clip(1.0 - nu**2 - nv**2, 0.0, 1.0))
    head = np.clip(nu * light[0] + nv * light[1] + nz * light[2], 0.0, 1.0)
    bu = np.clip(u / 2.6, -1.0, 1.0)
    body = np.clip(bu * light[0] + np.sqrt(1.0 - bu**2) * light[2], 0.0, 1.0) * 0.92
    w = np.clip((v - 1.05 * f.h) / 0.4, 0.0, 1.0)
    diffuse = head * (1.0 - w) + body * w
    spec = 0.12 * diffuse**8
    return 1.0 - p.light_strength * (1.0 - diffuse) + spec


def default_supersample(resolution: int) -> int:
    """Supersampling factor used by :func:`render_face`: 4 up to 256 px, then 2."""
    return 4 if resolution <= 256 else 2


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, (int, np.integer)) or resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8, got {resolution!r}")


def render_face_array(
    params: FaceParams, resolution: int, supersample: int | None = None
) -> np.ndarray:
    """Render one face as an (R, R, 3) uint8 RGB array (see :func:`render_face`)."""
    _check_resolution(resolution)
    ss = default_supersample(resolution) if supersample is None else int(supersample)
    if ss < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample!r}")
    c = _Canvas.new(params, resolution * ss)
    _draw_hair_back(c, params)
    _draw_body(c, params)
    if HAIR_STYLES[params.hair_style % len(HAIR_STYLES)] not in ("bob", "long", "curly"):
        _draw_ears(c, params)
    _draw_head(c, params)
    _draw_cheeks_and_age(c, params)
    _draw_eyes(c, params)
    _draw_nose(c, params)
    _draw_beard(c, params)
    _draw_mouth(c, params)
    _draw_brows(c, params)
    _draw_hair_cap(c, params)
    _draw_glasses(c, params)
    fg, cover = c.img, c.mask
    if ss > 1:
        fg, cover = fg.reduce(ss), cover.reduce(ss)
    fg_a = np.asarray(fg, dtype=np.float32) * (1.0 / 255.0)  # premultiplied by coverage
    alpha = np.asarray(cover, dtype=np.float32)[..., None] * (1.0 / 255.0)
    shade = _shading(params, resolution).astype(np.float32)[..., None]
    out = _background(params, resolution) * (1.0 - alpha) + fg_a * shade
    rng = np.random.default_rng([params.texture_seed, 1])
    noise = rng.standard_normal(out.shape, dtype=np.float32) * (params.noise_level / 255.0)
    return np.clip((out + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_face(params: FaceParams, resolution: int, supersample: int | None = None) -> Image.Image:
    """Render one face as an RGB ``resolution`` x ``resolution`` PIL image.

    Shapes are drawn at ``supersample`` (default :func:`default_supersample`) times the size
    and area-averaged down, so edges are anti-aliased at any resolution.
    """
    return Image.fromarray(render_face_array(params, resolution, supersample), mode="RGB")


def landmarks(params: FaceParams) -> dict[str, tuple[float, float]]:
    """Image positions ``(x, y)`` as fractions of the frame, in [0, 1], of key points.

    Keys: ``left_eye`` and ``right_eye`` (as seen in the image), ``nose_tip``, ``mouth``,
    ``chin``, ``forehead`` (hair region above the brows) and ``hair_top``.
    """
    f = _Frame(params, 1.0)
    g = _hair_geometry(params)
    h = params.head_aspect
    points = {
        "left_eye": f.xy(-params.eye_spacing, params.eye_v),
        "right_eye": f.xy(params.eye_spacing, params.eye_v),
        "nose_tip": f.xy(0.0, params.nose_tip_v, dz=0.25),
        "mouth": f.xy(0.0, params.mouth_v, dz=0.05),
        "chin": f.xy(0.0, h, 0.3),
        "forehead": f.xy(0.0, -0.85 * h),
        "hair_top": f.xy(0.0, -h - g["top"], 0.0),
    }
    return {k: (xy[0], xy[1]) for k, xy in points.items()}


# --------------------------------------------------------------------------- data sets


def iter_faces(
    seed: int, start: int = 0, count: int = 1, resolution: int = 64
) -> Iterator[tuple[np.ndarray, dict[str, int]]]:
    """Yield ``(image, labels)`` for faces ``start .. start + count - 1`` of data set ``seed``.

    ``image`` is (R, R, 3) uint8 RGB; ``labels`` maps each attribute to 0/1. Face ``i`` is
    the same one :func:`render_dataset` writes as file ``i`` with the same seed.
    """
    _check_resolution(resolution)
    for index in range(start, start + count):
        params = sample_params(face_rng(seed, index))
        yield render_face_array(params, resolution), labels_of(params)


def _progress(it: range, enabled: bool, desc: str) -> Iterator[int] | range:
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but stay usable without it
        return it
    return tqdm(it, desc=desc, unit="face")


def render_dataset(
    out_dir: Path, n: int, seed: int, resolution: int = 64, progress: bool = True
) -> Path:
    """Render faces ``0 .. n-1`` of data set ``seed`` into ``out_dir`` and return it.

    Writes ``000000.png`` ... and ``labels.json`` =
    ``{"attributes": [...], "resolution": R, "seed": S, "items": [{"file", "labels",
    "values"}, ...]}``. Files are written into a temporary folder beside ``out_dir`` that is
    renamed into place at the end, so an interrupted run leaves no half data set. Raises
    ``FileExistsError`` if ``out_dir`` exists and is not empty, ``ValueError`` for ``n <= 0``.
    """
    out_dir = Path(out_dir)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    _check_resolution(resolution)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"output directory {out_dir} already exists and is not empty; "
            "choose a new path or remove it first"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        items = []
        for index in _progress(range(n), progress, f"rendering faces to {out_dir}"):
            params = sample_params(face_rng(seed, index))
            name = f"{index:06d}.png"
            render_face(params, resolution).save(tmp / name, optimize=False)
            items.append(
                {"file": name, "labels": labels_of(params), "values": attribute_values(params)}
            )
        meta = {
            "attributes": list(ATTRIBUTES),
            "resolution": int(resolution),
            "seed": int(seed),
            "items": items,
        }
        (tmp / "labels.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
