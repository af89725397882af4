"""The demo's work, without any Gradio: every UI callback is a thin call into this module,
which itself only composes core/plugins functions. Keeping it UI-free makes it testable and
lets the Space and the local app share it.

Session state is a plain dict (Gradio keeps one per browser or API session, released a
time-to-live after its last action)::

    {"codes": float32 [1, L, D], "image": uint8 [R, R, 3], "name": str,
     "init_codes": float32 [1, L, D] | None, "alignment": paste-back info | None,
     "model": the model's label, "files": the name of its result folder (ResultFiles)}
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from idinvert.core.edit import (
    EditInputs,
    EditOperation,
    EditResult,
    InputKind,
    Layout,
    Param,
    ParamType,
    SlotType,
    run_edit,
    synthesize_result,
)
from idinvert.core.editing import manipulate
from idinvert.core.errors import IdinvertError
from idinvert.core.images import load_image, resize_to_model, to_tensor, to_uint8
from idinvert.core.inversion import (
    InversionSettings,
    StepCallback,
    StepInfo,
    invert,
    synthesize,
)
from idinvert.core.modeldir import ModelBundle
from idinvert.core.precision import native_bf16

Session = dict[str, Any]


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DemoLimits:
    """Server-side caps (enforced for the UI and the API alike).

    Attributes:
        max_steps: most optimisation steps per inversion.
        default_steps: steps preselected in the UI.
        max_upload_mb: largest upload accepted by the server.
        max_pixels: largest decoded image (width × height).
        max_contexts: most context images for diffusion.
        concurrency: requests of one kind handled at once (the queue holds the rest). With
            the compute thread their computations take turns on it (sliders between inversion
            steps, equal inversions batched up to ``max_batch``), so this does not multiply
            the CPU load; without it each runs in its own thread.
        max_sessions: browser/API sessions whose state is kept in memory (the oldest is
            dropped beyond that).
        session_ttl_s: a session's state and result files are released this long after its
            last action (or when its browser tab closes).
        result_grace_s: a result file is kept at least this long after it was written, even
            when its session ended (a late download still finds it).
        max_result_images: most images one edit may render (frames × items).
        precision: inversion arithmetic: ``"auto"`` (bf16 where the device computes it
            natively — AMX/AVX-512-BF16 CPUs, recent GPUs — else fp32), ``"fp32"`` (the
            official numbers) or ``"bf16"``. bf16 ends within about 1 % of fp32's objective
            on the bundled model (−0.33 % on average over 8 held-out renders × 100 steps) and
            takes ~0.7× its time on this CPU.
        max_batch: most inversions of concurrent visitors (same model, steps and settings)
            run as one batch on the compute thread (1 = never batch).
        compute_thread: run every computation on one long-lived server thread
            (:mod:`idinvert.demo.compute`; off on ZeroGPU Spaces, where the GPU is attached to
            the request's own call). Off: each request computes in its own thread.
        torch_threads: CPU threads of the computations (``torch.set_num_threads``); ``None``
            = all cores for the compute thread, else the cores divided among ``concurrency``
            computations (at least one each). Every thread that computes with several threads
            starts its own OpenMP team; once the process holds more of those threads than there
            are cores, OpenMP stops spinning and every parallel region pays a sleep/wake-up: a
            100-step inversion on the bundled model took 17.8 s in the server with 2 threads per
            request on 2 cores, 11.7 s with 1, and 5.1 s on the compute thread with 2.
    """

    max_steps: int = 300
    default_steps: int = 100
    max_upload_mb: int = 10
    max_pixels: int = 25_000_000
    max_contexts: int = 4
    concurrency: int = 8
    max_sessions: int = 200
    session_ttl_s: int = 3600
    result_grace_s: int = 30
    max_result_images: int = 64
    precision: str = "auto"
    compute_thread: bool = True
    max_batch: int = 8
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )

    def precision_for(self, device: torch.device) -> str:
        """:attr:`precision` resolved for ``device`` (``"fp32"`` or ``"bf16"``)."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if native_bf16(torch.device(device)) else "fp32"

    def threads_per_computation(self) -> int:
        """:attr:`torch_threads`, or all cores (compute thread), or the cores divided among
        ``concurrency`` computations."""
        if self.torch_threads is not None:
            return max(1, self.torch_threads)
        if self.compute_thread:
            return max(1, os.cpu_count() or 1)
        return max(1, (os.cpu_count() or 1) // max(1, self.concurrency))


class DemoError(ValueError):
    """A user-facing error (shown in the UI, returned through the API)."""


#: Originals kept for paste-back are reduced to this longer side (memory per session).
PASTE_BACK_MAX_SIDE = 2048


def load_upload(path: str | Path | None, limits: DemoLimits, what: str = "image") -> np.ndarray:
    """Validate an uploaded file → ``uint8 [H, W, 3]`` (EXIF applied, any mode → RGB).

    Raises:
        DemoError: no file, too large, too many pixels, not an image; the message names
            ``what`` (never the server's path).
    """
    if path is None or str(path) == "":
        raise DemoError(
            f"no {what} yet: upload a photo, take one with the webcam, or pick an example"
        )
    path = Path(path)
    if path.is_file() and path.stat().st_size > limits.max_upload_mb * 2**20:
        raise DemoError(
            f"the {what} is {path.stat().st_size / 2**20:.0f} MB; this demo accepts files up to "
            f"{limits.max_upload_mb} MB"
        )
    try:
        image = load_image(path)
    except IdinvertError as exc:
        raise DemoError(f"the {what}: {_without_name(str(exc), path)}") from None
    h, w = image.shape[:2]
    if h * w > limits.max_pixels:
        raise DemoError(
            f"the {what} is {w}×{h} pixels; this demo accepts up to "
            f"{limits.max_pixels / 1e6:.0f} MP (megapixels)"
        )
    return image


def _without_name(message: str, path: Path) -> str:
    """A core message ``"<path>: what is wrong"`` → ``"what is wrong"``."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return web_message(message)


def upload_notes(path: str | Path | None, limits: DemoLimits, resolution: int) -> list[str]:
    """What a visitor should know about an upload, checked as it arrives.

    Returns:
        notes (a GIF uses its first frame; a small image is upscaled; a non-square one is
        stretched); empty when there is nothing to say.

    Raises:
        DemoError: the upload cannot be used (see :func:`load_upload`); checked without decoding
            the whole image where possible.
    """
    if path is None or str(path) == "":
        return []
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DemoError("the upload did not arrive; please try again")
    if path.stat().st_size > limits.max_upload_mb * 2**20:
        raise DemoError(
            f"the file is {path.stat().st_size / 2**20:.0f} MB; this demo accepts files up to "
            f"{limits.max_upload_mb} MB"
        )
    try:
        with Image.open(path) as img:
            w, h = img.size
            frames = getattr(img, "n_frames", 1)
            fmt = img.format or ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        load_upload(path, limits, "file")  # raises the specific message
        return []
    if w * h > limits.max_pixels:
        raise DemoError(
            f"the image is {w}×{h} pixels; this demo accepts up to "
            f"{limits.max_pixels / 1e6:.0f} MP (megapixels)"
        )
    notes = []
    if fmt == "GIF" or frames > 1:
        notes.append(
            f"This {fmt or 'image'} has {frames} frames: the first frame is used."
            if frames > 1
            else "A GIF: its first frame is used."
        )
    if min(w, h) < resolution:
        notes.append(
            f"The image is small ({w}×{h}): it is upscaled to the model's {resolution}×"
            f"{resolution} pixels, so expect a blurry result."
        )
    if w != h and max(w, h) > 1.25 * min(w, h):
        notes.append(
            f"The image is not square ({w}×{h}): it is stretched to {resolution}×{resolution}."
        )
    return notes


def prepare_image(
    bundle: ModelBundle, path: str | Path | None, limits: DemoLimits, what: str = "image"
) -> np.ndarray:
    """Validate and resize an uploaded file → ``uint8 [R, R, 3]``."""
    return resize_to_model(load_upload(path, limits, what), bundle.resolution)


def alignment_default(bundle: ModelBundle) -> bool:
    """Align by default for face models (``alignment: ffhq``) when dlib is installed."""
    from idinvert.core.alignment import is_available

    return bundle.config.image.alignment == "ffhq" and is_available()


def align_upload(
    bundle: ModelBundle, image: np.ndarray, name: str = "photo"
) -> tuple[np.ndarray, dict[str, Any]]:
    """FFHQ-align the largest face → (``uint8 [R, R, 3]`` crop, paste-back info).

    The info holds the (size-capped) original and the JSON-able transform.
    """
    from PIL import Image

    from idinvert.core.alignment import align_image

    h, w = image.shape[:2]
    scale = min(1.0, PASTE_BACK_MAX_SIDE / max(h, w))
    if scale < 1.0:
        image = np.asarray(
            Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.LANCZOS)
        )
    aligned, faces = align_image(image, bundle.resolution, name=name)
    return aligned.image, {
        "original": image,
        "transform": aligned.transform.to_dict(),
        "faces": faces,
    }


def paste_into_original(session: Session | None, result: np.ndarray) -> np.ndarray | None:
    """Paste a ``uint8 [R, R, 3]`` result back into the session's original photo, if aligned."""
    if not session or not session.get("alignment"):
        return None
    from idinvert.core.alignment import paste_back

    info = session["alignment"]
    return paste_back(info["original"], result, info["transform"])


def check_steps(steps: float | int | None, limits: DemoLimits) -> int:
    """Steps as an int within ``0..max_steps``."""
    if steps is None:
        return limits.default_steps
    steps_int = int(steps)
    if steps_int != steps or not 0 <= steps_int <= limits.max_steps:
        raise DemoError(f"steps must be an integer in 0..{limits.max_steps}, got {steps}")
    return steps_int


@dataclass(frozen=True)
class ExpertSettings:
    """The inversion's expert settings (official defaults) and the ranges the demo accepts."""

    learning_rate: float = 0.01
    perceptual_weight: float = 5e-5
    domain_weight: float = 2.0

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "learning_rate": (1e-5, 1.0),
        "perceptual_weight": (0.0, 1.0),
        "domain_weight": (0.0, 100.0),
    }
    LABELS: ClassVar[dict[str, str]] = {
        "learning_rate": "Learning rate",
        "perceptual_weight": "Perceptual (VGG) loss weight",
        "domain_weight": "Domain (encoder) loss weight",
    }

    @classmethod
    def checked(cls, **values: Any) -> ExpertSettings:
        """Settings from user values (``None`` = default), each checked against its range."""
        out = {}
        for name, (lo, hi) in cls.RANGES.items():
            value = values.get(name)
            if value is None or value == "":
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise DemoError(f"{cls.LABELS[name]}: expected a number, got {value!r}") from None
            if not (np.isfinite(value) and lo <= value <= hi):
                raise DemoError(
                    f"{cls.LABELS[name]} must be between {lo:g} and {hi:g}, got {value:g}"
                )
            out[name] = value
        return cls(**out)


@dataclass
class InversionOutput:
    """What the invert action shows: images uint8 ``[R, R, 3]``, metrics and the loss curve."""

    target: np.ndarray
    encoder_image: np.ndarray
    final_image: np.ndarray
    codes: np.ndarray
    init_codes: np.ndarray
    mse_encoder: float
    mse: float
    lpips: float | None
    lpips_encoder: float | None
    seconds: float
    history: dict[str, np.ndarray]
    perceptual_used: bool = True
    precision: str = "fp32"


class InversionAbandoned(Exception):
    """Raised by an inversion's step callback when its request went away: that image's run
    stops (a batch goes on for the images whose requests are still there)."""


def invert_image(
    bundle: ModelBundle,
    image: np.ndarray,
    steps: int,
    callback: StepCallback | None = None,
    lpips_metric: Any = None,
    expert: ExpertSettings | None = None,
    precision: str = "fp32",
) -> InversionOutput:
    """In-domain inversion of one ``uint8 [R, R, 3]`` image with the official objective
    (``expert`` overrides its learning rate and loss weights; ``precision`` ``"fp32"`` or
    ``"bf16"``, see :attr:`DemoLimits.precision`)."""
    return invert_images(bundle, [image], steps, [callback], lpips_metric, expert, precision)[0]


def invert_images(
    bundle: ModelBundle,
    images: Sequence[np.ndarray],
    steps: int,
    callbacks: Sequence[StepCallback | None],
    lpips_metric: Any = None,
    expert: ExpertSettings | None = None,
    precision: str = "fp32",
) -> list[InversionOutput]:
    """:func:`invert_image` of several ``uint8 [R, R, 3]`` images as one batch (concurrent
    visitors' inversions with the same settings: one optimisation, N codes).

    ``callbacks[i]`` gets image i's :class:`StepInfo` (losses ``[1]``, offset 0). A callback
    that raises :class:`InversionAbandoned` is not called again; when every image's has, the
    whole run stops with that exception.
    """
    if len(images) != len(callbacks) or not images:
        raise ValueError("one callback (or None) per image, at least one image")
    expert = expert or ExpertSettings()
    settings = InversionSettings(
        steps=steps,
        precision=precision,
        learning_rate=expert.learning_rate,
        perceptual_weight=expert.perceptual_weight,
        domain_weight=expert.domain_weight,
    )
    if steps > 0 and bundle.perceptual is None:
        settings = settings.with_(perceptual_weight=0.0)
    x = torch.cat([to_tensor(image) for image in images])
    live = [c is not None for c in callbacks]

    def each_step(info: StepInfo) -> None:
        for j in range(len(next(iter(info.losses.values())))):
            i = info.offset + j
            callback = callbacks[i]
            if not live[i] or callback is None:
                continue
            try:
                callback(
                    StepInfo(
                        info.step, info.total, {k: v[j : j + 1] for k, v in info.losses.items()}
                    )
                )
            except InversionAbandoned:
                live[i] = False
                if not any(live):
                    raise

    result = invert(bundle, x, settings, callback=each_step if any(live) else None)
    enc = synthesize(bundle, result.init_codes)
    fin = synthesize(bundle, result.codes)
    # LPIPS of the final and the encoder's images, the targets' features computed once
    lpips_fin, lpips_enc = (
        lpips_metric.against(x, fin, enc) if lpips_metric is not None else (None, None)
    )
    outputs = []
    for i, image in enumerate(images):
        xi, ei, fi = x[i : i + 1], enc[i : i + 1], fin[i : i + 1]
        lp = None if lpips_fin is None else float(lpips_fin[i])
        lp_enc = None if lpips_enc is None else float(lpips_enc[i])
        outputs.append(
            InversionOutput(
                target=image,
                encoder_image=to_uint8(ei)[0],
                final_image=to_uint8(fi)[0],
                codes=result.codes[i : i + 1].numpy(),
                init_codes=result.init_codes[i : i + 1].numpy(),
                mse_encoder=float((ei - xi).square().mean()),
                mse=float((fi - xi).square().mean()),
                lpips=lp,
                lpips_encoder=lp_enc,
                seconds=result.seconds,
                history={k: v[:, i : i + 1] for k, v in result.history.items()},
                perceptual_used=settings.perceptual_weight > 0,
                precision=precision,
            )
        )
    return outputs


def sample_code(bundle: ModelBundle, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random truncated code ``[1, L, D]`` and its image ``uint8 [R, R, 3]``."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, bundle.config.generator.z_dim, generator=g)
    with torch.no_grad():
        wp = bundle.generator.z_to_wp(z.to(bundle.device)).float().cpu()
    return wp.numpy(), to_uint8(synthesize(bundle, wp))[0]


#: What every edit says when there is no code yet.
NEED_CODE = (
    "Nothing to edit yet: invert a photo or draw a random sample first (the buttons on the "
    "left); edits then work on its code."
)


def require_codes(session: Session | None) -> np.ndarray:
    """The session's codes ``[1, L, D]``, or a :class:`DemoError` saying what to do first."""
    if not session or session.get("codes") is None:
        raise DemoError(NEED_CODE)
    return np.asarray(session["codes"], dtype=np.float32)


def quick_edit(
    bundle: ModelBundle, codes: np.ndarray, boundaries: dict[str, Any], strengths: dict[str, float]
) -> np.ndarray:
    """Move ``codes [1, L, D]`` along several boundaries at once (each on its default layers,
    with :func:`~idinvert.core.editing.manipulate`, as the ``manipulate`` operation does) and
    synthesize → ``uint8 [R, R, 3]``. Only synthesis runs: fast enough for live sliders."""
    L = bundle.num_layers
    edited = np.asarray(codes, dtype=np.float32)
    for name, strength in strengths.items():
        if strength:
            b = boundaries[name]
            moved = manipulate(edited, b.layerwise(L), strength, strength, 1, b.layers or None)
            edited = moved[:, 0].astype(np.float32)
    return to_uint8(synthesize(bundle, torch.from_numpy(edited)))[0]


@dataclass(frozen=True)
class Upload:
    """An input slot filled from files uploaded in the operation's tab.

    Attributes:
        label: the upload control's label.
        what: the file in error messages (``"style image"``).
        multiple: several images (kept as images); otherwise one photo, inverted to codes
            when the slot holds codes.
    """

    label: str
    what: str
    multiple: bool = False


#: Slot filled from the session: its codes ``[1, L, D]`` or its image ``[1, R, R, 3]``.
SESSION = "session"


@dataclass(frozen=True)
class InputSource:
    """How the demo fills the slots of one :class:`~idinvert.core.edit.InputKind`.

    Attributes:
        slots: slot name → :data:`SESSION` or an :class:`Upload`.
        note: a line shown in the tab (where the session-side input comes from).
    """

    slots: dict[str, str | Upload]
    note: str = ""

    @property
    def uploads(self) -> list[tuple[str, Upload]]:
        """``(slot name, Upload)`` of the tab's upload controls, in slot order."""
        return [(n, s) for n, s in self.slots.items() if isinstance(s, Upload)]


#: One row per input kind: adding a kind to the core means adding its row here.
INPUT_SOURCES: dict[InputKind, InputSource] = {
    InputKind.CODES: InputSource({"codes": SESSION}),
    InputKind.TWO_CODES: InputSource(
        {"src": SESSION, "dst": Upload("Second image (end point)", "second image")}
    ),
    InputKind.STYLE_AND_CONTENT: InputSource(
        {
            "style": Upload("Style image (its codes supply the mixed layers)", "style image"),
            "content": SESSION,
        }
    ),
    InputKind.IMAGE_AND_CONTEXTS: InputSource(
        {"target": SESSION, "context": Upload("Context images", "context image", multiple=True)},
        note="The target crop comes from the inverted photo above.",
    ),
}


def gather_inputs(
    bundle: ModelBundle,
    kind: InputKind,
    session: Session | None,
    files: Sequence[Any],
    limits: DemoLimits,
    invert_photo: Callable[[np.ndarray], np.ndarray],
) -> dict[str, np.ndarray]:
    """The inputs of an edit from the session and the tab's uploads (see :data:`INPUT_SOURCES`).

    Args:
        files: one value per upload control, in :attr:`InputSource.uploads` order: a path, or
            a list of paths / file objects for ``multiple`` uploads.
        invert_photo: ``uint8 [R, R, 3]`` → codes ``[1, L, D]`` (the caller's inversion, e.g.
            on the GPU with a progress bar).

    Returns:
        slot name → float32 codes ``[N, L, D]`` or uint8 images ``[N, R, R, 3]``.
    """
    source = INPUT_SOURCES[kind]
    uploaded = dict(zip([n for n, _ in source.uploads], files, strict=True))
    image_slots = {s.name for s in kind.slots if s.type is SlotType.IMAGES}
    inputs: dict[str, np.ndarray] = {}
    for slot, how in source.slots.items():
        if how == SESSION and slot in image_slots:
            if not session or session.get("image") is None:
                raise DemoError(NEED_CODE)
            inputs[slot] = np.asarray(session["image"])[None]
        elif how == SESSION:
            inputs[slot] = require_codes(session)
        elif isinstance(how, Upload) and how.multiple:
            paths = [_path(f) for f in uploaded[slot] or []]
            if not paths:
                raise DemoError(f"add at least one {how.what}")
            if len(paths) > limits.max_contexts:
                raise DemoError(
                    f"{len(paths)} {how.what}s given; this demo takes at most "
                    f"{limits.max_contexts} {how.what}s"
                )
            inputs[slot] = np.stack([prepare_image(bundle, p, limits, how.what) for p in paths])
        elif isinstance(how, Upload):
            inputs[slot] = invert_photo(prepare_image(bundle, uploaded[slot], limits, how.what))
    return inputs


def _path(f: Any) -> str:
    """An uploaded file (a path, or an object with ``.name``) → its path."""
    return f if isinstance(f, str) else getattr(f, "name", str(f))


def endpoint_name(op: EditOperation) -> str:
    """The demo's API endpoint of ``op`` (without the leading ``/``): ``edit_`` + the name with
    dashes as underscores (``random-walk`` → ``edit_random_walk``)."""
    return "edit_" + op.name.replace("-", "_")


def run_operation(
    bundle: ModelBundle,
    op: EditOperation,
    inputs: dict[str, np.ndarray],
    params: dict[str, Any],
    progress: Any = None,
    limits: DemoLimits | None = None,
) -> tuple[EditResult, np.ndarray]:
    """Run an edit operation and render its codes → (result, uint8 ``[..., R, R, 3]``);
    with ``limits``, a result of more than ``max_result_images`` images is refused before
    rendering."""
    result = run_edit(op, bundle, EditInputs(inputs), params, progress=progress)
    if limits is not None:
        check_result_size(result, limits)
    return result, synthesize_result(bundle, result)


def result_frames(result: EditResult, images: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """Flatten rendered results into (image, caption) pairs for a gallery; captions in words
    (``"frame 2 of 7"``, ``"result 1 of 2"``, ``"style 1 × content 1"``)."""
    frames = []
    if result.layout is Layout.BATCH:
        n = len(images)
        for i, img in enumerate(images):
            frames.append((img, f"result {i + 1} of {n}" if n > 1 else "result"))
    elif result.layout is Layout.SEQUENCES:
        n = len(images)
        for i, seq in enumerate(images):
            prefix = f"image {i + 1}, " if n > 1 else ""
            for s, img in enumerate(seq):
                frames.append((img, f"{prefix}frame {s + 1} of {len(seq)}"))
    else:
        for r, row in enumerate(images):
            for c, img in enumerate(row):
                frames.append((img, f"style {r + 1} × content {c + 1}"))
    return frames


# --------------------------------------------------------------------------- caps on operations

#: Integer parameters with these names count optimisation steps or frames: the server's
#: ``max_steps`` caps them, whatever range the plugin declares.
STEP_PARAM_NAMES = frozenset({"steps", "num_steps", "n_steps", "iterations", "iters"})


def param_bounds(
    param: Param, bundle: ModelBundle, limits: DemoLimits
) -> tuple[float | int | None, float | int | None]:
    """A parameter's declared range for ``bundle``, clipped by the server's caps."""
    lo, hi = param.bounds_for(bundle)
    if param.type is ParamType.INT and param.name in STEP_PARAM_NAMES:
        cap = limits.max_steps if lo is None else max(limits.max_steps, int(lo))
        hi = cap if hi is None else min(hi, cap)
    return lo, hi


def check_params(
    op: EditOperation, params: dict[str, Any], bundle: ModelBundle, limits: DemoLimits
) -> None:
    """Every numeric value within its capped range (:func:`param_bounds`).

    Raises:
        DemoError: naming the control in words and the accepted range.
    """
    for p in op.params:
        value = params.get(p.name)
        if p.type not in (ParamType.INT, ParamType.FLOAT) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DemoError(f"{p.display_label}: expected a number, got {value!r}") from None
        lo, hi = param_bounds(p, bundle, limits)
        if (
            not np.isfinite(number)
            or (lo is not None and number < lo)
            or (hi is not None and number > hi)
        ):
            lo_s = "−∞" if lo is None else f"{lo:g}"
            hi_s = "∞" if hi is None else f"{hi:g}"
            raise DemoError(
                f"{p.display_label} must be between {lo_s} and {hi_s} on this demo, got {value}"
            )


def check_result_size(result: EditResult, limits: DemoLimits) -> None:
    """Refuse to render more than ``max_result_images`` images for one edit."""
    count = int(np.prod(result.codes.shape[:-2]))
    if count > limits.max_result_images:
        raise DemoError(
            f"this edit would render {count} images; this demo renders at most "
            f"{limits.max_result_images} at once (use fewer steps or fewer images)"
        )


# --------------------------------------------------------------------------- messages

_COMMAND_HINT = re.compile(r"\s*\((?:[^()]*?)(?:idinvert |--)[^()]*\)")
_NO_FLAG = re.compile(r"pass --no-align")
_FLAG = re.compile(r"`?--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`?")
_DOUBLED = re.compile(r"\b(images?|photos?) (?:images?|photos?)\b")
_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def web_message(text: str, words: dict[str, str] | None = None) -> str:
    """A message or help text written for the command line → words for a web visitor.

    Command hints in parentheses are dropped, ``--name`` becomes the control's name in words
    (``words`` maps a name to its label, else the name with spaces), server paths become
    bare file names.
    """
    words = words or {}
    text = _COMMAND_HINT.sub("", text)
    text = _NO_FLAG.sub('untick "Align face"', text)

    def flag(m: re.Match[str]) -> str:
        name = m.group(1).replace("-", "_")
        return words.get(name, f"“{name.replace('_', ' ')}”")

    text = _FLAG.sub(flag, text)
    text = _DOUBLED.sub(r"\1", text)  # "--context image" → "context image", not "… image image"
    return _PATH.sub(r"\1", text)


def operation_words(op: EditOperation) -> dict[str, str]:
    """Parameter and input-slot names of ``op`` → how the demo's tab calls them."""
    words = {p.name: f"“{p.display_label}”" for p in op.params}
    for slot, how in INPUT_SOURCES[op.inputs].slots.items():
        words[slot] = "photo" if how == SESSION else how.what
    return words


def edit_message(op: EditOperation, exc: Exception) -> str:
    """An error from running ``op`` in words for the web (parameter labels, no flags)."""
    from idinvert.core.edit import InputError, ParamError

    words = operation_words(op)
    if isinstance(exc, ParamError):
        label = words.get(exc.param, exc.param).strip("“”")
        return f"{label}: {web_message(exc.message, words)}"
    if isinstance(exc, InputError):
        return f"{words.get(exc.slot, exc.slot)}: {web_message(exc.message, words)}"
    return web_message(str(exc), words)


# --------------------------------------------------------------------------- models


@dataclass
class ModelEntry:
    """One selectable model: loaded on first use, then kept.

    Attributes:
        label: the name shown in the selector.
        ref: the model reference (built-in name, directory, ``owner/name@rev``; ``None`` =
            the bundled model).
    """

    label: str
    ref: str | None
    bundle: ModelBundle | None = None
    boundaries: dict[str, Any] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    lpips: Any = None


def parse_models(spec: str) -> list[tuple[str, str | None]]:
    """``"ffhq256=owner/a@rev,tower256=owner/b@rev,faces64"`` → ``[(label, ref), ...]``; an
    entry without ``label=`` is labelled by its reference (a directory by its name)."""
    out: list[tuple[str, str | None]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        label, sep, ref = part.partition("=")
        if not sep:
            ref, label = part, Path(part.rstrip("/")).name or part
        label, ref = label.strip(), ref.strip()
        if not label or not ref:
            raise ValueError(f"model list entry {part!r}: expected LABEL=REF or REF")
        if label in {entry[0] for entry in out}:
            raise ValueError(f"model list: the label {label!r} appears twice")
        out.append((label, ref))
    if not out:
        raise ValueError("the model list is empty")
    return out


class ModelCatalog:
    """The demo's models by label, each loaded lazily, once (thread-safe).

    Args:
        entries: ``(label, ref)`` in selector order; the first is the default.
        load: ``ref -> ModelBundle``.
        prepare: ``(entry, bundle) -> None`` fills an entry's boundaries, examples, metric
            after loading.
    """

    def __init__(
        self,
        entries: Sequence[tuple[str, str | None]],
        load: Callable[[str | None], ModelBundle],
        prepare: Callable[[ModelEntry, ModelBundle], None] | None = None,
    ) -> None:
        self.entries = {label: ModelEntry(label, ref) for label, ref in entries}
        self._load = load
        self._prepare = prepare
        self._locks = {label: threading.Lock() for label in self.entries}

    @property
    def labels(self) -> list[str]:
        return list(self.entries)

    @property
    def default(self) -> str:
        return next(iter(self.entries))

    def is_loaded(self, label: str) -> bool:
        return label in self.entries and self.entries[label].bundle is not None

    def get(self, label: str | None) -> ModelEntry:
        """The entry ``label`` (``None`` = the default), loading its model on first use."""
        label = label or self.default
        if label not in self.entries:
            raise DemoError(f"unknown model {label!r}; choose one of: {', '.join(self.entries)}")
        entry = self.entries[label]
        if entry.bundle is None:
            with self._locks[label]:
                if entry.bundle is None:
                    bundle = self._load(entry.ref)
                    if self._prepare is not None:
                        self._prepare(entry, bundle)
                    entry.bundle = bundle  # last: other threads then see a complete entry
        return entry


def model_summary(label: str, bundle: ModelBundle, examples: bool = True) -> str:
    """One line: which model, its domain and resolution, and what to try (``examples``: the
    page offers example images for it)."""
    cfg = bundle.config
    r = bundle.resolution
    about = (cfg.description or "").split(":")[0].strip().rstrip(".")
    dataset = str(cfg.provenance.get("dataset", ""))
    data = cfg.provenance.get("data") or {}
    synthetic = "synthetic" in dataset or (isinstance(data, dict) and data.get("synthetic"))
    if synthetic:
        tip = (
            "Try an example or a random sample: it only knows its own cartoon-like images, so a "
            "real photo comes back as its closest look-alike."
        )
    elif cfg.image.alignment == "ffhq":
        tip = "Try an example, a random sample, or your own face photo (it is aligned first)."
    else:
        tip = "Try an example, a random sample, or a photo of the same kind of scene."
    if not examples:
        tip = tip.replace("Try an example or a random sample", "Try a random sample").replace(
            "Try an example, a random sample,", "Try a random sample"
        )
    domain = f" — {about}" if about else ""
    return f"**Model: {label}**{domain}. Images are {r}×{r} pixels. {tip}"


# --------------------------------------------------------------------------- result files


class ResultFiles:
    """Result files, one folder per session and one sub-folder per result.

    A file is written once under a fresh name and never rewritten. A session's folder is
    removed when the session's state expires (:meth:`release`) unless an action of that
    session is running (:meth:`in_use`) or wrote within ``idle_s``; :meth:`sweep` (run
    periodically, see :meth:`start_sweeper`) removes folders idle for longer than that, which
    also covers sessions dropped without notice. Only the newest ``keep`` results of a session
    are kept (older ones are no longer shown anywhere).

    Args:
        root: where the folders go (the demo passes a folder Gradio serves without copying).
        keep: results kept per session.
        idle_s: a folder this long without a new file and without a running action is no
            longer needed (the demo uses its session time-to-live plus ``grace_s``).
        grace_s: a folder that got a file this recently is kept even when its session ended.
    """

    def __init__(
        self, root: Path, keep: int = 100, idle_s: float = 3600.0, grace_s: float = 30.0
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.idle_s = idle_s
        self.grace_s = grace_s
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _name(session: Session | None) -> str | None:
        name = (session or {}).get("files")
        if isinstance(name, str) and name and "/" not in name and name not in (".", ".."):
            return name
        return None

    def session_dir(self, session: Session | None) -> Path:
        """The session's folder (its name is kept in ``session["files"]``; created if new)."""
        folder = self.root / (self._name(session) or uuid.uuid4().hex)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def in_use(self, session: Session | None) -> Iterator[None]:
        """While this runs, the session's folder is never removed."""
        name = self._name(session)
        if name is None:
            yield
            return
        with self._lock:
            self._busy[name] = self._busy.get(name, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[name] -= 1
                if not self._busy[name]:
                    del self._busy[name]

    def new_result(self, session: Session | None) -> Path:
        """A fresh, empty folder for one result of ``session``."""
        folder = self.session_dir(session)
        results = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime)
        now = time.time()
        for old in results[: max(0, len(results) - self.keep + 1)]:
            if now - old.stat().st_mtime > self.grace_s:  # not one that may be in flight
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=folder, prefix=f"{time.time_ns():x}-"))

    def _idle_for(self, folder: Path) -> float:
        newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])
        return time.time() - newest

    def _remove_if_unused(self, folder: Path, min_idle_s: float) -> bool:
        with self._lock:
            if folder.name in self._busy:
                return False
            try:
                if self._idle_for(folder) < min_idle_s:
                    return False
            except OSError:
                return False
            shutil.rmtree(folder, ignore_errors=True)
            return True

    def release(self, session: Session | None) -> None:
        """The session's state is gone: remove its folder, unless an action of it is running
        or it got a file in the last ``grace_s`` seconds (then :meth:`sweep` removes it)."""
        name = self._name(session)
        if name is not None and (self.root / name).is_dir():
            self._remove_if_unused(self.root / name, self.grace_s)

    def sweep(self, max_age_s: float | None = None) -> int:
        """Remove session folders without a running action and idle for ``max_age_s``
        (default ``idle_s``) seconds → how many."""
        age = self.idle_s if max_age_s is None else max_age_s
        return sum(self._remove_if_unused(f, age) for f in list(self.root.iterdir()) if f.is_dir())

    def start_sweeper(self, every_s: float) -> threading.Thread:
        """Sweep every ``every_s`` seconds in a daemon thread, for as long as this object
        lives."""
        ref = weakref.ref(self)

        def loop() -> None:
            while True:
                time.sleep(every_s)
                files = ref()
                if files is None or not files.root.is_dir():
                    return
                with contextlib.suppress(OSError):
                    files.sweep()
                del files

        thread = threading.Thread(target=loop, daemon=True, name="idinvert-result-sweeper")
        thread.start()
        return thread
