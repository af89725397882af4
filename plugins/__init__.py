"""The plugin author's API in one import, and idinvert's built-in edit plugins.

A first plugin needs five names at most::

    from idinvert.plugins import EditInputs, EditOperation, EditResult, Param, hookimpl

See ``docs/plugins.md`` for the tutorial. The built-ins (``idinvert.plugins.interpolate``,
``.manipulate``, ``.diffuse``, ``.mix``) are written exactly like third-party plugins and are
registered through the same hook. Importing this package imports no torch.
"""

from __future__ import annotations

from idinvert.core.boundaries import Boundary
from idinvert.core.edit import (
    EditContext,
    EditError,
    EditInputs,
    EditOperation,
    EditResult,
    InputError,
    InputKind,
    Layout,
    Param,
    ParamError,
    ParamType,
    run_edit,
)
from idinvert.core.hookspecs import hookimpl

__all__ = [
    "Boundary",
    "EditContext",
    "EditError",
    "EditInputs",
    "EditOperation",
    "EditResult",
    "InputError",
    "InputKind",
    "Layout",
    "Param",
    "ParamError",
    "ParamType",
    "hookimpl",
    "run_edit",
]
