"""The demo's work, without any Gradio: every UI callback is a thin call into this module,
which itself only composes core/plugins functions. Keeping it UI-free makes it testable and
lets the Space and the local app share it.

Session state is a plain dict (Gradio keeps one per browser session)::

    {"codes": float32 [1, L, D], "image": uint8 [R, R, 3], "name": str,
     "init_codes": float32 [1, L, D] | None}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from idinvert.core.edit import (
    EditInputs,
    EditOperation,
    EditResult,
    InputKind,
    Layout,
    SlotType,
    run_edit,
    synthesize_result,
)
from idinvert.core.editing import manipulate
from idinvert.core.images import load_image, resize_to_model, to_tensor, to_uint8
from idinvert.core.inversion import InversionSettings, StepCallback, invert, synthesize
from idinvert.core.modeldir import ModelBundle

Session = dict[str, Any]


@dataclass(frozen=True)
class DemoLimits:
    """Server-side caps (enforced for the UI and the API alike).

    Attributes:
        max_steps: most optimisation steps per inversion.
        default_steps: steps preselected in the UI.
        max_upload_mb: largest upload accepted by the server.
        max_pixels: largest decoded image (width × height).
        max_contexts: most context images for diffusion.
        concurrency: inversions/edits running at once (the queue holds the rest).
    """

    max_steps: int = 300
    default_steps: int = 100
    max_upload_mb: int = 10
    max_pixels: int = 25_000_000
    max_contexts: int = 4
    concurrency: int = 2


class DemoError(ValueError):
    """A user-facing error (shown in the UI, returned through the API)."""


#: Originals kept for paste-back are reduced to this longer side (memory per session).
PASTE_BACK_MAX_SIDE = 2048


def load_upload(path: str | Path | None, limits: DemoLimits, what: str = "image") -> np.ndarray:
    """Validate an uploaded file → ``uint8 [H, W, 3]`` (EXIF applied, any mode → RGB)."""
    if path is None or str(path) == "":
        raise DemoError(f"no {what}: upload a photo, take one with the webcam, or pick an example")
    image = load_image(path)
    h, w = image.shape[:2]
    if h * w > limits.max_pixels:
        raise DemoError(
            f"{what} is {w}×{h}; this demo accepts up to {limits.max_pixels / 1e6:.0f} MP"
        )
    return image


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


def invert_image(
    bundle: ModelBundle,
    image: np.ndarray,
    steps: int,
    callback: StepCallback | None = None,
    lpips_metric: Any = None,
) -> InversionOutput:
    """In-domain inversion of one ``uint8 [R, R, 3]`` image with the official objective."""
    settings = InversionSettings(steps=steps)
    if steps > 0 and bundle.perceptual is None:
        settings = settings.with_(perceptual_weight=0.0)
    x = to_tensor(image)
    result = invert(bundle, x, settings, callback=callback)
    enc = synthesize(bundle, result.init_codes)
    fin = synthesize(bundle, result.codes)
    lp = lp_enc = None
    if lpips_metric is not None:
        lp = float(lpips_metric(fin, x))
        lp_enc = float(lpips_metric(enc, x))
    return InversionOutput(
        target=image,
        encoder_image=to_uint8(enc)[0],
        final_image=to_uint8(fin)[0],
        codes=result.codes.numpy(),
        init_codes=result.init_codes.numpy(),
        mse_encoder=float((enc - x).square().mean()),
        mse=float((fin - x).square().mean()),
        lpips=lp,
        lpips_encoder=lp_enc,
        seconds=result.seconds,
        history=result.history,
        perceptual_used=settings.perceptual_weight > 0,
    )


def sample_code(bundle: ModelBundle, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random truncated code ``[1, L, D]`` and its image ``uint8 [R, R, 3]``."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, bundle.config.generator.z_dim, generator=g)
    with torch.no_grad():
        wp = bundle.generator.z_to_wp(z.to(bundle.device)).float().cpu()
    return wp.numpy(), to_uint8(synthesize(bundle, wp))[0]


def require_codes(session: Session | None) -> np.ndarray:
    if not session or session.get("codes") is None:
        raise DemoError("invert a photo or draw a random sample first")
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
                raise DemoError("upload and invert a target photo first (its crop is pasted)")
            inputs[slot] = np.asarray(session["image"])[None]
        elif how == SESSION:
            inputs[slot] = require_codes(session)
        elif isinstance(how, Upload) and how.multiple:
            paths = [_path(f) for f in uploaded[slot] or []]
            if not paths:
                raise DemoError(f"add at least one {how.what}")
            if len(paths) > limits.max_contexts:
                raise DemoError(f"at most {limits.max_contexts} {how.what}s")
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
) -> tuple[EditResult, np.ndarray]:
    """Run an edit operation and render its codes → (result, uint8 ``[..., R, R, 3]``)."""
    result = run_edit(op, bundle, EditInputs(inputs), params, progress=progress)
    return result, synthesize_result(bundle, result)


def result_frames(result: EditResult, images: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """Flatten rendered results into (image, caption) pairs for a gallery."""
    frames = []
    if result.layout is Layout.BATCH:
        for name, img in zip(result.item_names(), images, strict=True):
            frames.append((img, name))
    elif result.layout is Layout.SEQUENCES:
        for name, seq in zip(result.item_names(), images, strict=True):
            for s, img in enumerate(seq):
                frames.append((img, f"{name} · {s}"))
    else:
        cols = result.column_item_names()
        for rname, row in zip(result.item_names(), images, strict=True):
            for cname, img in zip(cols, row, strict=True):
                frames.append((img, f"style {rname} × content {cname}"))
    return frames
