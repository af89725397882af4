"""A plugin whose hook raises after registering one operation (which must be dropped)."""

from __future__ import annotations

from collections.abc import Callable

from idinvert_fixture_good import OPERATION

from idinvert.plugins import EditOperation, hookimpl


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    from dataclasses import replace

    register(replace(OPERATION, name="half-registered"))
    raise KeyError("fixture plugin failed inside its hook")
