"""Built-in edit operation ``mix``: style mixing between two sets of codes.

A thin shell around :func:`idinvert.core.editing.mix_style`. The official ``mix_style.py``
takes layers 10–13 of 14 (the fine, colour layers) from the style code; the default here is
the same "last four layers" on any model (``L−4 .. L−1``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idinvert.core.editing import mix_style
from idinvert.plugins import EditContext, EditInputs, EditOperation, EditResult, Param, hookimpl

#: Number of trailing layers taken from the style codes by default (official: 10..13 of 14).
DEFAULT_STYLE_LAYERS = 4


def default_layers(bundle: Any) -> list[int]:
    """The last :data:`DEFAULT_STYLE_LAYERS` layers of the model (all if it has fewer)."""
    L = bundle.num_layers
    return list(range(max(L - DEFAULT_STYLE_LAYERS, 0), L))


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``style [S, L, D]``, ``content [C, L, D]`` → codes ``[S, C, L, D]``."""
    codes = mix_style(inputs["style"], inputs["content"], params["layers"])
    return EditResult(
        codes,
        names=[f"style{n}" for n in inputs.names_of("style")],
        column_names=[f"content{n}" for n in inputs.names_of("content")],
        info={"layers": params["layers"]},
    )


OPERATION = EditOperation(
    name="mix",
    title="Style mixing",
    description=(
        "Combine every --style code with every --content code: the chosen layers come from "
        "the style code, all others from the content code. Result: a grid with style rows "
        "and content columns."
    ),
    inputs="style_and_content",
    params=(
        Param(
            "layers",
            "layers",
            default_layers,
            help="Layers taken from the style codes, e.g. '10-13' or '0,2,4'.",
            default_help="the last 4 layers (L-4..L-1; official 10-13 of 14)",
        ),
    ),
    run=run,
    layout="grid",
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register ``mix``."""
    register(OPERATION)
