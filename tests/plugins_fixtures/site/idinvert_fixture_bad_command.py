"""A plugin adding one good command and one that clashes with the built-in ``invert``."""

from __future__ import annotations

import click

from idinvert.plugins import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("fixture-hello")
    @click.option("--name", default="world")
    def hello(name: str) -> None:
        """Say hello."""
        click.echo(f"hello {name}")

    @cli.command("invert")
    def invert() -> None:
        """Clashes with idinvert invert."""
