"""Built-in edit operation ``manipulate``: move codes along a semantic boundary.

A thin shell around :func:`idinvert.core.editing.manipulate` (official ``manipulate.py``:
layer-wise codes and boundaries, distances ``linspace(start, end, steps)``). The boundary is
a file (official ``.npy`` or our ``.safetensors``) or the name of one inside the model
directory; its default layers are used unless ``layers`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from idinvert.core.editing import layerwise_strength, manipulate
from idinvert.plugins import EditContext, EditInputs, EditOperation, EditResult, Param, hookimpl

#: Hard limit of |start| and |end| (boundaries are unit normals; ±3 is the usual range).
MAX_DISTANCE = 20.0


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``codes [N, L, D]`` → codes ``[N, steps, L, D]``."""
    bundle = context.bundle
    L = bundle.num_layers
    boundary = params["boundary"]
    layers = params["layers"]  # resolved: the boundary's own layers unless given
    strength: float | np.ndarray = 1.0
    if params["truncation_aware_strength"]:
        g = bundle.config.generator
        strength = layerwise_strength(L, g.truncation_psi, g.truncation_layers)
    codes = manipulate(
        inputs["codes"],
        boundary.layerwise(L),
        params["start"],
        params["end"],
        params["steps"],
        layers,
        strength,
    )
    return EditResult(
        codes.astype(np.float32),
        info={
            "boundary": boundary.name,
            "layers": list(layers),
            "distances": np.linspace(params["start"], params["end"], params["steps"]).tolist(),
            "strength": np.broadcast_to(strength, (L,)).tolist(),
        },
    )


OPERATION = EditOperation(
    name="manipulate",
    title="Semantic manipulation",
    description=(
        "Move each code along a semantic boundary (InterFaceGAN normal, one per layer) "
        "from distance --start to --end on the chosen layers, e.g. to change age or pose."
    ),
    inputs="codes",
    params=(
        Param(
            "boundary",
            "boundary",
            required=True,
            help="Boundary file (.npy official or .safetensors) or the name of a boundary "
            "inside the model directory.",
        ),
        Param(
            "layers",
            "layers",
            None,
            help="Layers to edit, e.g. '0-5' or '0,2,4'.",
            default_help="the boundary's own layers (all layers if it has none)",
        ),
        Param(
            "start",
            "float",
            -3.0,
            min=-MAX_DISTANCE,
            max=MAX_DISTANCE,
            step=0.1,
            help="Distance of the first code along the boundary normal.",
        ),
        Param(
            "end",
            "float",
            3.0,
            min=-MAX_DISTANCE,
            max=MAX_DISTANCE,
            step=0.1,
            help="Distance of the last code along the boundary normal.",
        ),
        Param(
            "steps",
            "int",
            7,
            min=1,
            max=500,
            step=1,
            help="Number of codes per sample, evenly spaced from start to end.",
        ),
        Param(
            "truncation_aware_strength",
            "bool",
            False,
            help="Scale the move by the model's truncation psi on the truncated layers "
            "(official get_layerwise_manipulation_strength).",
        ),
    ),
    run=run,
    layout="sequences",
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register ``manipulate``."""
    register(OPERATION)
