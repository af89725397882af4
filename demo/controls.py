"""Gradio controls generated from an edit operation's declared parameters.

One :class:`~idinvert.core.edit.Param` → one component (slider, number box, checkbox,
dropdown, layer picker, ...), and back: :func:`values_from_controls` turns the components'
values into the ``params`` dict that :func:`idinvert.core.edit.run_edit` validates.

Numeric ranges are the declared ones clipped by the server's caps
(:func:`idinvert.demo.service.param_bounds`); a bounded number becomes a slider unless a slider
cannot set it usefully (an expert value such as a learning rate or a loss weight, whose range
spans orders of magnitude around a small default): those get a number box with the same range.
Help texts are rewritten for a web visitor (:func:`idinvert.demo.service.web_message`).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import gradio as gr

from idinvert.core.edit import EditOperation, Param, ParamType
from idinvert.core.modeldir import ModelBundle
from idinvert.demo import service


def is_expert_number(param: Param, lo: float | None, hi: float | None, default: Any) -> bool:
    """A float a linear slider cannot set usefully: a positive range spanning three or more
    orders of magnitude, or a non-zero default below 1 % of the range."""
    if param.type is not ParamType.FLOAT or lo is None or hi is None or hi <= lo:
        return False
    if lo > 0 and hi / lo >= 1e3:
        return True
    return default not in (None, 0) and abs(float(default)) < (hi - lo) / 100


def _numeric(param: Param, bundle: ModelBundle, limits: service.DemoLimits) -> tuple:
    """``(lo, hi, default)`` of a number: capped bounds, the default clipped into them."""
    lo, hi = service.param_bounds(param, bundle, limits)
    default = param.default_for(bundle)
    if default is not None and hi is not None and default > hi:
        default = hi
    return lo, hi, default


_TYPED_EXAMPLE = re.compile(r",? e\.g\. '[^']*'(?: or '[^']*')?")


def _info(param: Param, bundle: ModelBundle, words: dict[str, str]) -> str:
    if param.type is ParamType.BOUNDARY:
        return "Which attribute to change: one of the model's semantic boundaries."
    text = service.web_message(param.help, words)
    if param.type is ParamType.LAYERS:  # ticked in boxes here, not typed as "0-5"
        text = _TYPED_EXAMPLE.sub("", text) + " Tick the layers (0 = coarsest)."
    if param.default_help:
        text += f" Default: {service.web_message(param.default_help, words)}."
    return text


def control_for(
    param: Param,
    bundle: ModelBundle,
    limits: service.DemoLimits | None = None,
    words: dict[str, str] | None = None,
) -> gr.components.Component:
    """Build the component for one parameter, with the model's defaults and capped bounds."""
    limits = limits or service.DemoLimits()
    label = param.display_label
    info = _info(param, bundle, words or {})
    default = param.default_for(bundle)
    t = param.type
    if t in (ParamType.INT, ParamType.FLOAT):
        lo, hi, default = _numeric(param, bundle, limits)
        if lo is not None and hi is not None and not is_expert_number(param, lo, hi, default):
            step = param.step or (1 if t is ParamType.INT else (hi - lo) / 100)
            return gr.Slider(
                lo,
                hi,
                value=default if default is not None else lo,
                step=step,
                label=label,
                info=info,
            )
        bounds = f" Accepted: {lo:g} to {hi:g}." if lo is not None and hi is not None else ""
        return gr.Number(
            value=default,
            label=label,
            info=info + bounds,
            minimum=lo,
            maximum=hi,
            precision=0 if t is ParamType.INT else None,
        )
    if t is ParamType.BOOL:
        return gr.Checkbox(value=bool(default), label=label, info=info)
    if t is ParamType.CHOICE:
        return gr.Dropdown(list(param.choices), value=default, label=label, info=info)
    if t is ParamType.LAYERS:
        choices = [str(i) for i in range(bundle.num_layers)]
        value = [str(i) for i in default] if default else []
        hint = " Leave all unticked for the default." if default is None else ""
        return gr.CheckboxGroup(choices, value=value, label=label, info=info + hint)
    if t is ParamType.BOUNDARY:
        choices = param.choices_for(bundle)
        return gr.Dropdown(
            choices,
            value=choices[0] if choices else None,
            label=label,
            info=info if choices else "This model has no semantic boundaries.",
            interactive=bool(choices),
        )
    return gr.Textbox(value=default or "", label=label, info=info)


def update_for(param: Param, bundle: ModelBundle, limits: service.DemoLimits) -> Any:
    """A ``gr.update`` moving an existing control to another model (ranges, defaults,
    choices); same kind of component as :func:`control_for` built."""
    default = param.default_for(bundle)
    t = param.type
    if t in (ParamType.INT, ParamType.FLOAT):
        lo, hi, default = _numeric(param, bundle, limits)
        return gr.update(minimum=lo, maximum=hi, value=default if default is not None else lo)
    if t is ParamType.LAYERS:
        choices = [str(i) for i in range(bundle.num_layers)]
        return gr.update(choices=choices, value=[str(i) for i in default] if default else [])
    if t is ParamType.BOUNDARY:
        choices = param.choices_for(bundle)
        return gr.update(
            choices=choices, value=choices[0] if choices else None, interactive=bool(choices)
        )
    return gr.update(value=default)


def controls_for(
    op: EditOperation, bundle: ModelBundle, limits: service.DemoLimits | None = None
) -> list[gr.components.Component]:
    """Components for every parameter of ``op`` in declaration order."""
    words = service.operation_words(op)
    return [control_for(p, bundle, limits, words) for p in op.params]


def values_from_controls(op: EditOperation, values: list[Any]) -> dict[str, Any]:
    """Component values (same order as :func:`controls_for`) → ``params`` for ``run_edit``.

    Empty layer selections and empty text mean "default" (``None``).
    """
    params: dict[str, Any] = {}
    for p, v in zip(op.params, values, strict=True):
        if p.type is ParamType.LAYERS:
            v = ",".join(str(x) for x in v) if v else None
        elif p.type in (ParamType.STRING, ParamType.BOUNDARY) and (
            v is None or str(v).strip() == ""
        ):
            v = None
        elif p.type is ParamType.INT and v is not None:
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                v = int(round(float(v)))  # else run_edit names the parameter and the problem
        params[p.name] = v
    return params
