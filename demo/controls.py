"""Gradio controls generated from an edit operation's declared parameters.

One :class:`~idinvert.core.edit.Param` → one component (slider, checkbox, dropdown, layer
picker, ...), and back: :func:`values_from_controls` turns the components' values into the
``params`` dict that :func:`idinvert.core.edit.run_edit` validates.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from idinvert.core.edit import EditOperation, Param, ParamType
from idinvert.core.modeldir import ModelBundle


def control_for(param: Param, bundle: ModelBundle) -> gr.components.Component:
    """Build the component for one parameter, with the model's defaults and bounds."""
    label = param.display_label
    info = param.help + (f" Default: {param.default_help}." if param.default_help else "")
    default = param.default_for(bundle)
    t = param.type
    if t in (ParamType.INT, ParamType.FLOAT):
        lo, hi = param.bounds_for(bundle)
        if lo is not None and hi is not None:
            step = param.step or (1 if t is ParamType.INT else (hi - lo) / 100)
            return gr.Slider(
                lo,
                hi,
                value=default if default is not None else lo,
                step=step,
                label=label,
                info=info,
            )
        return gr.Number(
            value=default, label=label, info=info, precision=0 if t is ParamType.INT else None
        )
    if t is ParamType.BOOL:
        return gr.Checkbox(value=bool(default), label=label, info=info)
    if t is ParamType.CHOICE:
        return gr.Dropdown(list(param.choices), value=default, label=label, info=info)
    if t is ParamType.LAYERS:
        choices = [str(i) for i in range(bundle.num_layers)]
        value = [str(i) for i in default] if default else []
        hint = " Leave empty for the default." if default is None else ""
        return gr.CheckboxGroup(choices, value=value, label=label, info=info + hint)
    if t is ParamType.BOUNDARY:
        choices = param.choices_for(bundle)
        return gr.Dropdown(
            choices,
            value=choices[0] if choices else None,
            label=label,
            info=info,
            interactive=bool(choices),
        )
    return gr.Textbox(value=default or "", label=label, info=info)


def controls_for(op: EditOperation, bundle: ModelBundle) -> list[gr.components.Component]:
    """Components for every parameter of ``op`` in declaration order."""
    return [control_for(p, bundle) for p in op.params]


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
            v = int(round(float(v)))
        params[p.name] = v
    return params
