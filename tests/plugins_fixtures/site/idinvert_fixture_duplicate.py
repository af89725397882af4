"""A plugin that registers an operation name a built-in already owns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from idinvert_fixture_good import OPERATION

from idinvert.plugins import EditOperation, hookimpl


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    register(replace(OPERATION, name="interpolate"))
