"""Built-in edit operation ``diffuse``: semantic diffusion (official ``diffuse.py``).

For every target × context pair: paste the target's crop into the context
(``x = target·mask + context·(1 − mask)``), start from ``E(x)`` and optimise the code so that
``G(z)`` reproduces only the crop (masked pixel + perceptual loss, no domain regulariser);
the generator fills in the rest so that the result stays realistic.

The official defaults (centre 125, 145; crop 110) are for 256 px models; on other models
they are scaled by ``R/256`` (floored, as in the reference vectors: 31, 36, 27 at 64 px).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from idinvert.core.edit import (
    EditContext,
    EditInputs,
    EditOperation,
    EditResult,
    InputKind,
    Layout,
    Param,
    ParamError,
    ParamType,
)
from idinvert.core.editing import rect_mask, stitch
from idinvert.core.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

    from idinvert.core.inversion import InversionSettings, StepCallback
    from idinvert.core.modeldir import ModelBundle

#: Official ``diffuse.py`` defaults, for 256 px models.
OFFICIAL_RESOLUTION = 256
OFFICIAL_CENTER_X = 125
OFFICIAL_CENTER_Y = 145
OFFICIAL_CROP = 110


def scaled(value: int) -> Callable[[Any], int]:
    """A model-dependent default: ``floor(value · R / 256)``."""

    def default(bundle: Any) -> int:
        return value * bundle.resolution // OFFICIAL_RESOLUTION

    default.__doc__ = f"{value} at 256 px, scaled to the model resolution"
    return default


@dataclass
class DiffusionResult:
    """Output of :func:`semantic_diffusion`.

    Attributes:
        codes: float32 ``[T·C, L, D]`` final codes (target-major).
        init_codes: float32 ``[T·C, L, D]`` encoder codes of the stitched inputs.
        stitched: float32 ``[T·C, 3, R, R]`` stitched inputs in [−1, 1].
        history: loss name → ``[steps, T·C]``.
    """

    codes: np.ndarray
    init_codes: np.ndarray
    stitched: np.ndarray
    history: dict[str, np.ndarray]


def semantic_diffusion(
    bundle: ModelBundle,
    targets: torch.Tensor,
    contexts: torch.Tensor,
    *,
    center_x: int,
    center_y: int,
    crop_x: int,
    crop_y: int,
    settings: InversionSettings,
    batch_size: int | None = None,
    callback: StepCallback | None = None,
) -> DiffusionResult:
    """Diffuse every target's crop into every context.

    Args:
        bundle: the model (needs a perceptual net when ``settings.perceptual_weight > 0``).
        targets: ``[T, 3, R, R]`` in [−1, 1].
        contexts: ``[C, 3, R, R]`` in [−1, 1].
        center_x, center_y: crop centre (column, row) in pixels.
        crop_x, crop_y: crop width and height in pixels.
        settings: optimisation settings (the official run uses ``domain_weight=0``).
        batch_size: pairs optimised at once (``None``: all).
        callback: per-step callback of :func:`idinvert.core.inversion.invert`.

    Raises:
        ValueError: naming ``center_x``/``center_y``/``crop_x``/``crop_y`` when the crop does
            not fit in the image.
    """
    import torch

    from idinvert.core.inversion import invert

    mask = rect_mask(bundle.resolution, center_x, center_y, crop_x, crop_y)
    stitched = stitch(targets.float().numpy(), contexts.float().numpy(), mask)
    result = invert(
        bundle,
        torch.from_numpy(stitched),
        settings,
        mask=torch.from_numpy(mask),
        batch_size=batch_size,
        callback=callback,
    )
    return DiffusionResult(
        result.codes.numpy(), result.init_codes.numpy(), stitched, result.history
    )


def validate(params: dict[str, Any], bundle: ModelBundle) -> None:
    """The crop must lie inside the image; a perceptual loss needs a perceptual network."""
    try:
        rect_mask(
            bundle.resolution,
            params["center_x"],
            params["center_y"],
            params["crop_x"],
            params["crop_y"],
        )
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        raise ParamError(name, message) from None
    if params["perceptual_weight"] > 0 and bundle.perceptual is None:
        raise ParamError(
            "perceptual_weight",
            "this model has no perceptual network; use 0 or convert the model with --perceptual",
        )


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``target [T, R, R, 3]``, ``context [C, R, R, 3]`` uint8 → codes ``[T·C, L, D]``."""
    from idinvert.core.images import to_tensor, to_uint8
    from idinvert.core.inversion import InversionSettings, StepInfo

    settings = InversionSettings(
        steps=params["steps"],
        learning_rate=params["lr"],
        pixel_weight=1.0,
        perceptual_weight=params["perceptual_weight"],
        domain_weight=0.0,
    )
    targets, contexts = inputs["target"], inputs["context"]
    total = settings.steps * len(targets) * len(contexts)
    done = 0

    def on_step(info: StepInfo) -> None:
        nonlocal done
        done += len(info.losses["total"])
        context.report(done, total, "diffusing")

    out = semantic_diffusion(
        context.bundle,
        to_tensor(targets),
        to_tensor(contexts),
        center_x=params["center_x"],
        center_y=params["center_y"],
        crop_x=params["crop_x"],
        crop_y=params["crop_y"],
        settings=settings,
        batch_size=context.batch_size,
        callback=on_step,
    )
    import torch

    names = [f"{t}_TO_{c}" for t in inputs.names_of("target") for c in inputs.names_of("context")]
    final = {k: v[-1].tolist() for k, v in out.history.items()} if settings.steps else {}
    return EditResult(
        out.codes,
        Layout.BATCH,
        names=names,
        extra_images={"input": to_uint8(torch.from_numpy(out.stitched))},
        info={"final_losses": final, "pairs": names},
    )


OPERATION = EditOperation(
    name="diffuse",
    title="Semantic diffusion",
    description=(
        "Paste a crop of each --target image (e.g. a face) into each --context image and let "
        "masked in-domain inversion blend it in. Result codes: [targets × contexts, L, D], "
        "target-major."
    ),
    inputs=InputKind.IMAGE_AND_CONTEXTS,
    params=(
        Param(
            "center_x",
            ParamType.INT,
            scaled(OFFICIAL_CENTER_X),
            min=0,
            max=lambda b: b.resolution - 1,
            step=1,
            help="Column of the crop centre (pixels).",
            default_help="125 at 256 px, scaled to the model",
        ),
        Param(
            "center_y",
            ParamType.INT,
            scaled(OFFICIAL_CENTER_Y),
            min=0,
            max=lambda b: b.resolution - 1,
            step=1,
            help="Row of the crop centre (pixels).",
            default_help="145 at 256 px, scaled to the model",
        ),
        Param(
            "crop_x",
            ParamType.INT,
            scaled(OFFICIAL_CROP),
            min=1,
            max=lambda b: b.resolution,
            step=1,
            help="Crop width (pixels).",
            default_help="110 at 256 px, scaled to the model",
        ),
        Param(
            "crop_y",
            ParamType.INT,
            scaled(OFFICIAL_CROP),
            min=1,
            max=lambda b: b.resolution,
            step=1,
            help="Crop height (pixels).",
            default_help="110 at 256 px, scaled to the model",
        ),
        Param(
            "steps",
            ParamType.INT,
            100,
            min=0,
            max=100000,
            step=10,
            help="Optimisation steps (0 = encoder only).",
        ),
        Param(
            "lr", ParamType.FLOAT, 0.01, min=1e-8, max=10.0, step=0.001, help="Adam learning rate."
        ),
        Param(
            "perceptual_weight",
            ParamType.FLOAT,
            5e-5,
            min=0.0,
            max=1.0,
            step=1e-5,
            help="Weight of the VGG feature loss on the crop (0 disables it).",
        ),
    ),
    run=run,
    layout=Layout.BATCH,
    validate=validate,
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register ``diffuse``."""
    register(OPERATION)
