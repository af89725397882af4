"""The options most ``idinvert`` commands share, defined once.

Each :class:`SharedOption` works as a decorator on hand-written commands (``@MODEL``) and as a
``click.Option`` for generated ones (``MODEL.option()``, used by ``idinvert edit NAME`` and
plugin commands). Importing this module imports click only (no torch), so building commands
stays fast. Destinations: ``model_ref``, ``out_dir``, ``device``, ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SharedOption:
    """One option's declarations and attributes (as passed to ``click.Option``)."""

    decls: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def option(self) -> click.Option:
        """A fresh ``click.Option`` (for commands built with ``click.Command(params=...)``)."""
        return click.Option(list(self.decls), **self.attrs)

    def with_help(self, help: str) -> SharedOption:
        """The same option with a command-specific help text."""
        return SharedOption(self.decls, {**self.attrs, "help": help})

    def __call__(self, f: F) -> F:
        """Add the option to a command function (``@MODEL``)."""
        return click.option(*self.decls, **self.attrs)(f)


MODEL = SharedOption(
    ("--model", "-m", "model_ref"),
    {
        "default": None,
        "metavar": "REF",
        "help": "Built-in name, model directory, or Hub repo id owner/name[@revision]. "
        "Default: the bundled model.",
    },
)
OUT = SharedOption(
    ("--out", "-o", "out_dir"),
    {
        "required": True,
        "type": click.Path(file_okay=False, path_type=Path),
        "help": "Output directory (created; nothing is written there if the command fails).",
    },
)
DEVICE = SharedOption(
    ("--device",),
    {"default": "auto", "show_default": True, "help": "auto, cpu, cuda, cuda:N or mps."},
)


def batch_size(default: int = 8, help: str | None = None) -> SharedOption:
    """``--batch-size N`` (1..1024) with a command-specific default and help."""
    return SharedOption(
        ("--batch-size",),
        {
            "default": default,
            "show_default": True,
            "type": click.IntRange(1, 1024),
            "help": help,
        },
    )
