"""``idinvert data``: commands that make the synthetic training data.

The main CLI attaches :data:`data_group`; ``idinvert data render --n N --seed S --out DIR``
writes a labelled face data set (see :func:`idinvert.training.faces.render_dataset`).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from idinvert.training.faces import ATTRIBUTES, render_dataset

data_group = click.Group(
    name="data",
    help="Make synthetic training data: procedurally rendered, labelled faces.",
)


def _positive_n(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value <= 0:
        raise click.BadParameter(f"must be a positive number of faces, got {value}.")
    return value


def _resolution(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if not 16 <= value <= 1024 or value & (value - 1):
        raise click.BadParameter(
            f"must be a power of 2 between 16 and 1024 (e.g. 64), got {value}."
        )
    return value


@data_group.command("render")
@click.option(
    "--n", "n", type=int, required=True, callback=_positive_n, help="Number of faces to render."
)
@click.option(
    "--seed",
    type=int,
    required=True,
    help="Data set seed; face i is the same for a given seed whatever --n is.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output directory (must not exist or be empty).",
)
@click.option(
    "--resolution",
    type=int,
    default=64,
    show_default=True,
    callback=_resolution,
    help="Image size in pixels (power of 2, 16..1024).",
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
def render_command(n: int, seed: int, out: Path, resolution: int, progress: bool) -> None:
    """Render N labelled synthetic faces as PNGs plus labels.json into OUT."""
    start = time.perf_counter()
    try:
        render_dataset(out, n=n, seed=seed, resolution=resolution, progress=progress)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    elapsed = time.perf_counter() - start
    click.echo(
        f"rendered {n} faces ({resolution}x{resolution}, seed {seed}, "
        f"{len(ATTRIBUTES)} attributes) to {out}/ in {elapsed:.1f}s"
    )
