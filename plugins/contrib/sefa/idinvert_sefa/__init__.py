"""idinvert-sefa: SeFa (closed-form factorization) directions as an idinvert plugin.

Hooks:

* ``register_edit_operations``: ``idinvert edit sefa`` moves codes along one discovered
  direction on the chosen layers and writes the directions next to the codes.
* ``register_commands``: ``idinvert sefa-boundaries`` writes the top-k directions as boundary
  files usable by ``idinvert edit manipulate --boundary FILE`` (and the demo).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idinvert.core.editing import manipulate
from idinvert.plugins import EditInputs, EditOperation, EditResult, Param, ParamError, hookimpl
from idinvert_sefa.factorize import closed_form_factorization, style_weights

if TYPE_CHECKING:
    import click

    from idinvert.plugins import EditContext

try:
    __version__ = version("idinvert-sefa")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree
    __version__ = "0.0.0"

__all__ = ["OPERATION", "closed_form_factorization", "directions_for", "style_weights"]


def directions_for(
    bundle: Any, layers: list[int] | None, top_k: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """SeFa directions of ``bundle``'s generator.

    Args:
        bundle: a loaded :class:`~idinvert.core.modeldir.ModelBundle`.
        layers: layers whose style weights are factorised (``None`` = all).
        top_k: number of directions.

    Returns:
        ``directions`` float32 ``[k, D]``, ``eigenvalues`` ``[k]``, the layers used.
    """
    layers = list(range(bundle.num_layers)) if not layers else list(layers)
    directions, values = closed_form_factorization(style_weights(bundle.generator, layers), top_k)
    return directions, values, layers


def run(context: EditContext, inputs: EditInputs, params: dict[str, Any]) -> EditResult:
    """``codes [N, L, D]`` → codes ``[N, steps, L, D]`` along direction ``component``."""
    directions, values, layers = directions_for(context.bundle, params["layers"], params["top_k"])
    direction = directions[params["component"]]
    codes = manipulate(
        inputs["codes"], direction, params["start"], params["end"], params["steps"], layers
    )
    return EditResult(
        codes.astype(np.float32),
        arrays={"directions": directions, "eigenvalues": values.astype(np.float32)},
        info={
            "layers": layers,
            "component": params["component"],
            "eigenvalues": values.tolist(),
            "distances": np.linspace(params["start"], params["end"], params["steps"]).tolist(),
        },
    )


def validate(params: dict[str, Any], bundle: Any) -> None:
    """``component`` must be one of the ``top_k`` directions."""
    if params["component"] >= params["top_k"]:
        raise ParamError(
            "component", f"must be below top_k ({params['top_k']}), got {params['component']}"
        )


OPERATION = EditOperation(
    name="sefa",
    title="SeFa directions",
    description=(
        "Move codes along an unsupervised semantic direction found by closed-form "
        "factorization of the generator's style weights (SeFa, CVPR 2021). Also writes the "
        "top-k directions (directions.npy, [k, D]) and their eigenvalues."
    ),
    inputs="codes",
    params=(
        Param(
            "layers",
            "layers",
            None,
            help="Layers to factorise and edit, e.g. '0-3'.",
            default_help="all layers",
        ),
        Param(
            "component",
            "int",
            0,
            min=0,
            max=lambda b: b.w_dim - 1,
            step=1,
            help="Which direction to follow (0 = largest eigenvalue).",
        ),
        Param(
            "top_k",
            "int",
            5,
            min=1,
            max=lambda b: b.w_dim,
            step=1,
            help="Number of directions to compute and save.",
        ),
        Param(
            "start",
            "float",
            -3.0,
            min=-20.0,
            max=20.0,
            step=0.1,
            help="Distance of the first code along the direction.",
        ),
        Param(
            "end",
            "float",
            3.0,
            min=-20.0,
            max=20.0,
            step=0.1,
            help="Distance of the last code along the direction.",
        ),
        Param("steps", "int", 7, min=1, max=500, step=1, help="Codes per sample."),
    ),
    run=run,
    layout="sequences",
    validate=validate,
)


@hookimpl
def register_edit_operations(register: Callable[[EditOperation], None]) -> None:
    """Register ``sefa``."""
    register(OPERATION)


def sefa_boundaries(
    model_ref: str | None, out_dir: Path, device: str, layers: str, top_k: int
) -> None:
    """Write the top-k SeFa directions as boundary files (OUT/sefa_KK.safetensors).

    Each file holds one direction [1, D] and the factorised layers as its default layers,
    so 'idinvert edit manipulate --boundary OUT/sefa_00.safetensors' follows it.
    """
    import click

    from idinvert.core.boundaries import Boundary, parse_layers, save_boundary
    from idinvert.core.outputs import staged_output
    from idinvert.hub.api import load_model

    bundle = load_model(model_ref, device)
    try:
        layer_ids = parse_layers(layers, bundle.num_layers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--layers'") from None
    if top_k > bundle.w_dim:
        raise click.BadParameter(f"must be at most D = {bundle.w_dim}", param_hint="'--top-k'")
    directions, values, used = directions_for(bundle, layer_ids, top_k)
    with staged_output(out_dir) as stage:
        for k, direction in enumerate(directions):
            source = f"SeFa layers {used}, eigenvalue {values[k]:.6g}"
            boundary = Boundary(f"sefa_{k:02d}", direction[None], used, source)
            save_boundary(boundary, stage / f"sefa_{k:02d}.safetensors")
        np.save(stage / "eigenvalues.npy", values.astype(np.float32))
    click.echo(f"wrote {top_k} SeFa direction(s) of layers {used} -> {out_dir}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``idinvert sefa-boundaries`` (cheap: nothing heavy is imported until it runs)."""
    import click

    from idinvert.cli.options import DEVICE, MODEL, OUT

    params = [
        MODEL.option(),
        OUT.option(),
        DEVICE.option(),
        click.Option(
            ["--layers"], default="all", show_default=True, help="Layers to factorise, e.g. '0-3'."
        ),
        click.Option(
            ["--top-k"],
            default=5,
            show_default=True,
            type=click.IntRange(1, 4096),
            help="Number of directions to write.",
        ),
    ]
    cli.add_command(
        click.Command(
            "sefa-boundaries",
            params=params,
            callback=sefa_boundaries,
            help=sefa_boundaries.__doc__,
            short_help="Write SeFa directions as boundaries.",
        )
    )
