"""``idinvert space export``: write a complete Hugging Face Space folder for the demo."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("space")
def space_group() -> None:
    """Hugging Face Space for the web demo."""


@space_group.command("export")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    "model_ref",
    default=None,
    metavar="REF",
    help="Model the Space serves: a Hub repo id owner/name@<commit> (pin a commit), a "
    "configured name, or a bundled model (default: the bundled offline model).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it is not empty.")
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Ship this idinvert wheel (default: built from the source checkout, else the "
    "installed files).",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Build the idinvert wheel from this source tree.",
)
def export_command(
    out_dir: Path, model_ref: str | None, overwrite: bool, wheel: Path | None, source: Path | None
) -> None:
    """Write OUT_DIR: README.md (Space front matter, models: the model repo), app.py,
    requirements.txt and idinvert itself (unpacked from its wheel, so the Space installs without
    idinvert being on any package index). Publish it with
    HfApi().upload_folder(folder_path=OUT_DIR, repo_id="owner/space", repo_type="space").
    """
    from idinvert.hub.space import export_space, export_summary, space_model

    model = space_model(model_ref)
    if model.repo_id and not model.pinned:
        click.echo(
            f"warning: {model.reference} is not pinned to a commit; pass "
            f"{model.repo_id}@<commit> for reproducible results",
            err=True,
        )
    folder = export_space(out_dir, model_ref, overwrite=overwrite, wheel=wheel, source=source)
    click.echo(f"Space written to {folder} ({export_summary(folder)})")
    click.echo(f"model: {model.reference or 'the bundled offline model'}")
    click.echo(
        "publish it with: HfApi().upload_folder(folder_path="
        f'"{folder}", repo_id="owner/space", repo_type="space")'
    )
