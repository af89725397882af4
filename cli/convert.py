"""``idinvert convert``: official checkpoints → model directory."""

from __future__ import annotations

from pathlib import Path

import click

from idinvert.hub.convert import convert_checkpoints

_existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("convert")
@click.option(
    "--generator",
    "generator_path",
    required=True,
    type=_existing_file,
    help="Official generator .pth (e.g. styleganinv_ffhq256_generator.pth).",
)
@click.option(
    "--encoder",
    "encoder_path",
    required=True,
    type=_existing_file,
    help="Official encoder .pth (e.g. styleganinv_ffhq256_encoder.pth).",
)
@click.option(
    "--perceptual",
    "perceptual_path",
    type=_existing_file,
    default=None,
    help="Official Keras-converted vgg16.pth (the paper's perceptual network).",
)
@click.option(
    "--boundaries",
    "boundaries_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of official boundary .npy files to include.",
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Model directory to write.",
)
@click.option("--name", default=None, help="Model name in config.json (default: folder name).")
@click.option(
    "--alignment",
    type=click.Choice(["ffhq", "none"]),
    default=None,
    help="Input alignment the model expects (default: guessed from the file name).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def convert_command(
    generator_path: Path,
    encoder_path: Path,
    perceptual_path: Path | None,
    boundaries_dir: Path | None,
    out_dir: Path,
    name: str | None,
    alignment: str | None,
    overwrite: bool,
) -> None:
    """Convert official IDInvert checkpoints into an idinvert model directory.

    The architecture (resolution, widths, z/w dims, mapping depth, fused up-convolution) is
    inferred from the tensor shapes; files are read with torch.load(weights_only=True).
    """
    written = convert_checkpoints(
        generator_path,
        encoder_path,
        out_dir,
        perceptual_path=perceptual_path,
        boundaries_dir=boundaries_dir,
        name=name,
        alignment=None if alignment in (None, "none") else alignment,
        overwrite=overwrite,
    )
    click.echo(f"wrote model directory {written}")
