"""``idinvert train …``: the training commands (a click group the main CLI attaches).

Commands: ``gan`` (this module). Other training commands (``encoder``, ``boundary``) register
on :data:`train_group` with ``@train_group.command(...)``.

Also runnable as a module, which is what ``torchrun`` needs for multi-process CPU training::

    torchrun --nproc_per_node=2 -m idinvert.training.train_cli gan --out RUN --threads 1
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from idinvert.training.cli_options import (
    base_config,
    channels_last_option,
    device_option,
    end_state,
    explicit_fields,
    is_main_process,
    output_options,
    run_dir_options,
    run_training,
)

train_group = click.Group(
    name="train",
    help="Train idinvert's own models on CPU (GAN, encoder, attribute boundaries).",
)

# CLI option name -> GanTrainConfig field, for options that map one-to-one.
_GAN_FIELDS = {
    "resolution": "resolution",
    "kimg": "total_kimg",
    "batch_size": "batch_size",
    "seed": "seed",
    "threads": "threads",
    "workers": "num_workers",
    "z_dim": "z_dim",
    "w_dim": "w_dim",
    "mapping_layers": "mapping_layers",
    "mapping_hidden": "mapping_hidden_dim",
    "fmaps_base": "fmaps_base",
    "fmaps_max": "fmaps_max",
    "d_fmaps_base": "d_fmaps_base",
    "d_fmaps_max": "d_fmaps_max",
    "lr": "lr",
    "r1_gamma": "r1_gamma",
    "r1_interval": "r1_interval",
    "ema_kimg": "ema_kimg",
    "style_mixing": "style_mixing_prob",
    "mirror": "mirror",
    "channels_last": "channels_last",
    "bf16": "bf16",
    "teacher_weight": "teacher_weight",
    "teacher_perceptual": "teacher_perceptual",
    "mapping_lr_scale": "mapping_lr_scale",
    "init_generator": "init_generator",
    "d_warmup_kimg": "d_warmup_kimg",
    "data": "data",
    "checkpoint_minutes": "checkpoint_minutes",
    "max_minutes": "max_minutes",
    "sample_every": "sample_every",
    "log_every": "log_every",
    "grid": "grid_size",
    "progress": "progress",
    "device": "device",
}


def _fp16_mib(numel: int) -> float:
    return numel * 2 / 2**20


@train_group.command("gan")
@run_dir_options(
    "Continue from RUN_DIR/checkpoint.pt if it exists (its settings are reused; "
    "options given here override the runtime ones). --no-resume starts over and "
    "replaces the checkpoint, log and grids."
)
@click.option("--resolution", type=int, default=None, help="Image size (default 64).")
@click.option("--kimg", type=float, default=None, help="Train until this many thousand images.")
@click.option("--batch-size", type=int, default=None, help="Global batch size (default 32).")
@click.option("--seed", type=int, default=None, help="Seed of init, latents and data stream.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="torch threads per process (default 2; use 1 per rank under torchrun).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Face-rendering worker processes per rank (0 = in-process; default 1).",
)
@click.option("--z-dim", type=int, default=None)
@click.option("--w-dim", type=int, default=None)
@click.option("--mapping-layers", type=int, default=None)
@click.option("--mapping-hidden", type=int, default=None)
@click.option(
    "--fmaps-base",
    type=int,
    default=None,
    help="G channels at resolution r: min(fmaps_base // r, fmaps_max).",
)
@click.option("--fmaps-max", type=int, default=None)
@click.option("--d-fmaps-base", type=int, default=None, help="D channel numerator (default 1024).")
@click.option("--d-fmaps-max", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--r1-gamma", type=float, default=None)
@click.option("--r1-interval", type=int, default=None)
@click.option("--ema-kimg", type=float, default=None)
@click.option("--style-mixing", type=float, default=None, help="Style-mixing probability.")
@click.option("--mirror/--no-mirror", default=None, help="Random horizontal flips of reals.")
@channels_last_option()
@click.option(
    "--bf16/--no-bf16",
    default=None,
    help="bfloat16 autocast for G and D forward passes (AMX CPUs).",
)
@click.option(
    "--teacher-weight",
    type=float,
    default=None,
    help="Renderer-as-teacher reconstruction weight (0 = adversarial only; needs z-dim >= 64).",
)
@click.option(
    "--teacher-perceptual",
    type=float,
    default=None,
    help="Shallow-VGG weight inside the teacher term (default 1).",
)
@click.option(
    "--mapping-lr-scale",
    type=float,
    default=None,
    help="Mapping-network lr relative to --lr (default 1).",
)
@click.option(
    "--init-generator",
    type=str,
    default=None,
    help="Model directory whose generator starts a fresh run (D starts fresh).",
)
@click.option(
    "--d-warmup-kimg",
    type=float,
    default=None,
    help="Train only D for this many kimg first (use with --init-generator).",
)
@click.option(
    "--data",
    type=str,
    default=None,
    help="Renderer as module:function (default idinvert.training.faces:iter_faces).",
)
@device_option()
@click.option(
    "--checkpoint-minutes",
    type=float,
    default=None,
    help="Checkpoint at least this often (default 10).",
)
@click.option(
    "--max-minutes",
    type=float,
    default=None,
    help="Stop with a checkpoint after this many minutes (resume later).",
)
@output_options(grid_help="Sample grid side (images).")
@click.option(
    "--dry-run", is_flag=True, help="Print the resolved configuration and network sizes, then exit."
)
def gan_command(out: Path, resume: bool, dry_run: bool, **options: Any) -> None:
    """Train the StyleGAN generator on procedural faces (resumable; Ctrl-C saves and stops)."""
    from idinvert.training.gan import (
        CHECKPOINT_FILE,
        GanTrainConfig,
        load_run_config,
        train_gan,
    )

    explicit = explicit_fields(options, _GAN_FIELDS)
    try:
        base = base_config(out, resume, CHECKPOINT_FILE, load_run_config)
        cfg = dataclasses.replace(base or GanTrainConfig(), **explicit)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    main = is_main_process()
    if dry_run:
        _print_sizes(cfg)
        return
    if main:
        what = "resuming" if base is not None else "starting"
        click.echo(
            f"{what} GAN training in {out} ({cfg.resolution} px, {cfg.total_kimg:g} kimg, "
            f"batch {cfg.batch_size})",
            err=True,
        )
    result = run_training(train_gan, cfg, out, resume=resume)
    if main:
        click.echo(
            f"{end_state(result)}: step {result['step']}, {result['kimg']:.1f} kimg, "
            f"checkpoint {out / CHECKPOINT_FILE}",
            err=True,
        )


def _print_sizes(cfg: Any) -> None:
    """Echo the config and parameter counts (G, D) with the fp16 size of G."""
    import json

    from idinvert.core.models.generator import Generator
    from idinvert.training.discriminator import Discriminator
    from idinvert.training.gan import count_parameters

    g_cfg, d_cfg = cfg.generator_config(), cfg.discriminator_config()
    n_g = count_parameters(Generator(g_cfg))
    n_d = count_parameters(Discriminator(d_cfg))
    sizes = [2**i for i in range(2, g_cfg.resolution.bit_length())]
    channels = {r: g_cfg.channels(r) for r in sizes}
    click.echo(json.dumps(cfg.to_dict(), indent=2))
    click.echo(f"G channels per resolution: {channels}; L = {g_cfg.num_layers}")
    click.echo(f"G: {n_g:,} parameters ({_fp16_mib(n_g):.1f} MiB fp16); D: {n_d:,} parameters")


def _attach_encoder_commands() -> None:
    from idinvert.training.encoder_cli import boundary_command, encoder_command, export_command

    for command in (encoder_command, boundary_command, export_command):
        train_group.add_command(command)


_attach_encoder_commands()

if __name__ == "__main__":
    train_group()
