"""Built-in edit operation ``diffuse``: semantic diffusion (official ``diffuse.py``).

A thin shell around :func:`idinvert.core.editing.semantic_diffusion`: paste a crop of each
target into each context and let masked in-domain inversion blend it in.

The official defaults (centre 125, 145; crop 110) are for 256 px models; on other models
they are scaled by ``R/256`` (floored, as in the reference vectors: 31, 36, 27 at 64 px).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from idinvert.core.editing import rect_mask, semantic_diffusion
from idinvert.plugins import (
    EditContext,
    EditInputs,
    EditOperation,
    EditResult,
    Param,
    ParamError,
    hookimpl,
)

if TYPE_CHECKING:
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


def _pixels(name: str, official: int, low: int, help: str) -> Param:
    """A pixel position (``low`` 0: ``0..R-1``) or size (``low`` 1: ``1..R``) whose default is
    the official 256 px value scaled to the model."""
    return Param(
        name,
        "int",
        scaled(official),
        min=low,
        max=lambda b: b.resolution - 1 + low,
        step=1,
        help=help,
        default_help=f"{official} at 256 px, scaled to the model",
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
    import torch

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
        to_tensor(targets).numpy(),
        to_tensor(contexts).numpy(),
        center_x=params["center_x"],
        center_y=params["center_y"],
        crop_x=params["crop_x"],
        crop_y=params["crop_y"],
        settings=settings,
        batch_size=context.batch_size,
        callback=on_step,
    )
    names = [f"{t}_TO_{c}" for t in inputs.names_of("target") for c in inputs.names_of("context")]
    final = {k: v[-1].tolist() for k, v in out.history.items()} if settings.steps else {}
    return EditResult(
        out.codes,
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
    inputs="image_and_contexts",
    params=(
        _pixels("center_x", OFFICIAL_CENTER_X, 0, "Column of the crop centre (pixels)."),
        _pixels("center_y", OFFICIAL_CENTER_Y, 0, "Row of the crop centre (pixels)."),
        _pixels("crop_x", OFFICIAL_CROP, 1, "Crop width (pixels)."),
        _pixels("crop_y", OFFICIAL_CROP, 1, "Crop height (pixels)."),
        Param(
            "steps",
            "int",
            100,
            min=0,
            max=100000,
            step=10,
            help="Optimisation steps (0 = encoder only).",
        ),
        Param(
            "lr",
            "float",
            0.01,
            min=1e-8,
            max=10.0,
            step=0.001,
            help="Adam learning rate.",
        ),
        Param(
            "perceptual_weight",
            "float",
            5e-5,
            min=0.0,
            max=1.0,
            step=1e-5,
            help="Weight of the VGG feature loss on the crop (0 disables it).",
        ),
    ),
    run=run,
    layout="batch",
    validate=validate,
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register ``diffuse``."""
    register(OPERATION)
