"""Built-in edit operation ``interpolate``: straight paths between paired codes in W+.

A thin shell around :func:`idinvert.core.editing.interpolate` (official ``interpolate.py``:
``--step 5`` there means 5 in-between codes, i.e. ``steps = 7`` here, endpoints included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from idinvert.core.editing import interpolate
from idinvert.plugins import EditContext, EditInputs, EditOperation, EditResult, Param, hookimpl


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``src [N, L, D]``, ``dst [N, L, D]`` → codes ``[N, steps, L, D]``."""
    codes = interpolate(inputs["src"], inputs["dst"], params["steps"])
    src_names, dst_names = inputs.names_of("src"), inputs.names_of("dst")
    names = None
    if inputs.names.get("src") or inputs.names.get("dst"):
        names = [f"{a}_TO_{b}" for a, b in zip(src_names, dst_names, strict=True)]
    return EditResult(
        codes.astype(np.float32),
        names=names,
        info={"t": np.linspace(0.0, 1.0, params["steps"]).tolist()},
    )


OPERATION = EditOperation(
    name="interpolate",
    title="Interpolation",
    description=(
        "Walk in a straight line through W+ from each --src code to the paired --dst code "
        "(endpoints included). In-domain codes keep the in-between images realistic."
    ),
    inputs="two_codes",
    params=(
        Param(
            "steps",
            "int",
            7,
            min=2,
            max=500,
            step=1,
            help="Number of codes per path, both endpoints included.",
        ),
    ),
    run=run,
    layout="sequences",
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register ``interpolate``."""
    register(OPERATION)
