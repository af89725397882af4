"""Plugin hook specifications of idinvert (pluggy project ``"idinvert"``).

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names match the
specs below; it is found through the ``idinvert`` entry-point group (third-party) or the
``DEFAULT_PLUGINS`` tuple (built-ins, registered through the very same hooks). Plugin authors
import ``hookimpl`` with the rest of their API from :mod:`idinvert.plugins`::

    from idinvert.plugins import hookimpl

    @hookimpl
    def register_edit_operations(register):
        register(MY_OPERATION)

Both hooks follow the llm pattern: the host passes a callback/collector it owns, so name
collisions are detected in one place (``core/plugins.py``) and reported naming both plugins.
See ``docs/plugins.md`` for the tutorial and the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from idinvert.core.edit import EditOperation

#: Marks hook specifications (this module only).
hookspec = pluggy.HookspecMarker("idinvert")
#: Marks hook implementations in plugins (re-exported as ``idinvert.plugins.hookimpl``).
hookimpl = pluggy.HookimplMarker("idinvert")


@hookspec
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register edit operations by calling ``register(operation)`` once per operation.

    :param register: callback taking an :class:`~idinvert.core.edit.EditOperation`; it
        raises ``TypeError`` for anything else and ``ValueError`` when this plugin registers
        the same name twice. A name already taken by another plugin is reported (naming both
        plugins) and becomes unusable until one of them is disabled.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add top-level ``idinvert`` subcommands with ``@cli.command()``.

    :param cli: a click group collecting this plugin's commands; commands whose name is
        already used by idinvert or another plugin are refused and reported.
    """
