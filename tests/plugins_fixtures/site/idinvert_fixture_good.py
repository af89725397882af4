"""A well-behaved third-party plugin: ``scale-codes`` (codes × factor, optionally negated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idinvert.core.edit import (
    EditContext,
    EditInputs,
    EditOperation,
    EditResult,
    InputKind,
    Layout,
    Param,
    ParamType,
)
from idinvert.core.hookspecs import hookimpl


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``codes [N, L, D]`` → ``[N, L, D]``: every code scaled on ``layers``."""
    codes = inputs["codes"].copy()
    layers = params["layers"] or list(range(codes.shape[1]))
    factor = -params["factor"] if params["negate"] else params["factor"]
    if params["mode"] == "scale":
        codes[:, layers] *= factor
    else:
        codes[:, layers] += factor
    return EditResult(codes, Layout.BATCH, names=[f"{params['tag']}{i}" for i in range(len(codes))])


OPERATION = EditOperation(
    name="scale-codes",
    title="Scale codes",
    description="Multiply (or shift) codes on some layers. A test fixture.",
    inputs=InputKind.CODES,
    params=(
        Param("factor", ParamType.FLOAT, 1.0, min=-10.0, max=10.0, help="The factor."),
        Param(
            "mode", ParamType.CHOICE, "scale", choices=("scale", "shift"), help="How to apply it."
        ),
        Param("tag", ParamType.STRING, "code", help="File name prefix."),
        Param("negate", ParamType.BOOL, False, help="Negate the factor."),
        Param("layers", ParamType.LAYERS, None, help="Layers.", default_help="all layers"),
    ),
    run=run,
    layout=Layout.BATCH,
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    register(OPERATION)
