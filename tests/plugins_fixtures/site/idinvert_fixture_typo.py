"""A plugin with a misspelled hook name (``pm.check_pending()`` reports it)."""

from __future__ import annotations

from idinvert.plugins import hookimpl


@hookimpl
def register_edit_operation(register: object) -> None:  # deliberately misspelled
    raise AssertionError("never called")
