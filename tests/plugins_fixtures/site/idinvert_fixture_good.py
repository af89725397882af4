"""A well-behaved third-party plugin: ``scale-codes`` (codes × factor, optionally negated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idinvert.plugins import EditContext, EditInputs, EditOperation, EditResult, Param, hookimpl


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``codes [N, L, D]`` → ``[N, L, D]``: every code scaled on ``layers``."""
    codes = inputs["codes"].copy()
    layers = params["layers"]
    factor = -params["factor"] if params["negate"] else params["factor"]
    if params["mode"] == "scale":
        codes[:, layers] *= factor
    else:
        codes[:, layers] += factor
    return EditResult(codes, names=[f"{params['tag']}{i}" for i in range(len(codes))])


OPERATION = EditOperation(
    name="scale-codes",
    title="Scale codes",
    description="Multiply (or shift) codes on some layers. A test fixture.",
    inputs="codes",
    params=(
        Param("factor", "float", 1.0, min=-10.0, max=10.0, help="The factor."),
        Param("mode", "choice", "scale", choices=("scale", "shift"), help="How to apply it."),
        Param("tag", "string", "code", help="File name prefix."),
        Param("negate", "bool", False, help="Negate the factor."),
        Param("layers", "layers", None, help="Layers.", default_help="all layers"),
    ),
    run=run,
    layout="batch",
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    register(OPERATION)
