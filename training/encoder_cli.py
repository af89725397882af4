"""``idinvert train encoder | boundary | export``: click commands added to ``train_group``
(``training/train_cli.py``; the CLI lists the group in ``cli/main.py``).

Also runnable as a module (what ``torchrun`` launches on every rank)::

    torchrun --nproc_per_node=2 -m idinvert.training.encoder_cli encoder --gan RUN ...
"""

from __future__ import annotations

import dataclasses
import json
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

# CLI option name -> EncoderTrainConfig field.
_ENCODER_FIELDS = {
    "kimg": "total_kimg",
    "batch_size": "batch_size",
    "lr": "lr",
    "decay_kimg": "decay_kimg",
    "channels_base": "channels_base",
    "channels_max": "channels_max",
    "trainable_gamma": "trainable_gamma",
    "perceptual": "perceptual",
    "perceptual_weight": "perceptual_weight",
    "adversarial_weight": "adversarial_weight",
    "latent_weight": "latent_weight",
    "latent_kimg": "latent_kimg",
    "r1_gamma": "r1_gamma",
    "r1_interval": "r1_interval",
    "mirror": "mirror",
    "channels_last": "channels_last",
    "data": "data",
    "data_seed": "data_seed",
    "seed": "seed",
    "init_encoder": "init_encoder",
    "threads": "threads",
    "workers": "num_workers",
    "checkpoint_minutes": "checkpoint_minutes",
    "sample_every": "sample_every",
    "log_every": "log_every",
    "grid": "grid_size",
    "progress": "progress",
    "device": "device",
}


@click.command("encoder")
@click.option(
    "--gan",
    "gan_run",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="GAN run directory (G_ema and D come from its checkpoint.pt). Required for a "
    "new run; a resumed run uses the generator stored in its own checkpoint.",
)
@run_dir_options("Continue from OUT/checkpoint.pt if it exists. --no-resume starts over.")
@click.option(
    "--kimg", type=float, default=None, help="Train until this many thousand images (default 80)."
)
@click.option("--batch-size", type=int, default=None, help="Global batch (default 16).")
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Initial Adam lr (default 1e-4·sqrt(batch/128): paper lr, sqrt-scaled).",
)
@click.option(
    "--decay-kimg",
    type=float,
    default=None,
    help="lr × 0.8 every this many kimg, continuously (default kimg/4).",
)
@click.option("--channels-base", type=int, default=None, help="Encoder width (default 32).")
@click.option("--channels-max", type=int, default=None, help="Encoder width cap (default 256).")
@click.option(
    "--trainable-gamma/--frozen-gamma",
    default=None,
    help="Train BatchNorm scales (default: trainable, as the official TF training).",
)
@click.option(
    "--perceptual",
    type=click.Choice(["auto", "torchvision", "none"]),
    default=None,
    help="VGG term: auto (use torchvision VGG16 if available), torchvision (required), none.",
)
@click.option("--perceptual-weight", type=float, default=None, help="λ_vgg (default 5e-5).")
@click.option("--adversarial-weight", type=float, default=None, help="λ_adv (default 0.08).")
@click.option(
    "--latent-weight",
    type=float,
    default=None,
    help="Latent-reconstruction warm-up on generated images (not in the paper; default 0 = off).",
)
@click.option(
    "--latent-kimg", type=float, default=None, help="Warm-up length in kimg (0 = whole run)."
)
@click.option("--r1-gamma", type=float, default=None, help="R1 γ (default 10·(R/256)²).")
@click.option("--r1-interval", type=int, default=None, help="R1 every N steps (default 1).")
@click.option("--mirror/--no-mirror", default=None, help="Random flips (default on).")
@channels_last_option()
@click.option("--data", type=str, default=None, help="Renderer module:function (default: GAN's).")
@click.option(
    "--data-seed",
    type=int,
    default=None,
    help="Training stream (default: the GAN run's seed; must be < 2^29).",
)
@click.option("--seed", type=int, default=None, help="Init / latent sampling seed.")
@click.option(
    "--init-encoder",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Warm start: a model directory whose encoder.safetensors initialises E (same "
    "architecture); its output BatchNorm is re-matched to the new generator's codes.",
)
@click.option("--threads", type=int, default=None, help="torch threads per process.")
@click.option("--workers", type=int, default=None, help="Rendering processes per rank.")
@device_option()
@click.option("--checkpoint-minutes", type=float, default=None)
@output_options(grid_help="Sample grid: grid² input|recon pairs.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and sizes.")
def encoder_command(
    gan_run: Path | None, out: Path, resume: bool, dry_run: bool, **options: Any
) -> None:
    """Train the domain-guided encoder against a trained GAN (resumable; Ctrl-C saves)."""
    from idinvert.training.encoder_train import (
        CHECKPOINT_FILE,
        EncoderTrainConfig,
        load_run_config,
        train_encoder,
    )

    explicit = explicit_fields(options, _ENCODER_FIELDS)
    if gan_run is not None:
        explicit["gan_run"] = str(gan_run)
    try:
        base = base_config(out, resume, CHECKPOINT_FILE, load_run_config)
        cfg = dataclasses.replace(base or EncoderTrainConfig(), **explicit)
        if base is not None and gan_run is not None:
            cfg = dataclasses.replace(cfg, gan_run=str(gan_run.resolve()))
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    if base is None and gan_run is None:
        raise click.UsageError("--gan RUN_DIR is required to start a new encoder run")
    if dry_run:
        _print_encoder_sizes(cfg)
        return
    main = is_main_process()
    if main:
        what = "resuming" if base is not None else "starting"
        click.echo(
            f"{what} encoder training in {out} ({cfg.total_kimg:g} kimg, batch {cfg.batch_size})",
            err=True,
        )
    result = run_training(train_encoder, cfg, out, resume=resume)
    if main:
        c = result["config"]
        click.echo(
            f"{end_state(result)}: step {result['step']}, {result['kimg']:.1f} kimg, perceptual "
            f"term {c.perceptual}, checkpoint {out / CHECKPOINT_FILE}",
            err=True,
        )


def _print_encoder_sizes(cfg: Any) -> None:
    from idinvert.core.models.encoder import Encoder
    from idinvert.training.encoder_train import load_gan_parts
    from idinvert.training.gan import count_parameters

    if not cfg.gan_run:
        click.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    gan_cfg, _ = load_gan_parts(cfg.gan_run)
    resolved = cfg.resolved(gan_cfg, vgg_available=cfg.perceptual != "none")
    e_cfg = resolved.encoder_config(gan_cfg.generator_config())
    n = count_parameters(Encoder(e_cfg))
    click.echo(json.dumps(resolved.to_dict(), indent=2))
    click.echo(
        f"E: {n:,} parameters ({n * 2 / 2**20:.1f} MiB fp16); {resolved.total_steps()} steps"
    )


def _levels(measured: dict[str, Any]) -> str:
    """A measured edit's mean colour shift per region, e.g. ``"8.9, 13.1"`` (8-bit levels)."""
    from idinvert.training.entanglement import REGIONS

    return ", ".join(f"{measured['colour_shift'][r]['mean_abs']:.1f}" for r in REGIONS)


@click.command("boundary")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model directory (from `idinvert train export`); boundaries, the classifier "
    "and boundary_report.json are written into it.",
)
@click.option(
    "--attribute", "-a", "attributes", multiple=True, help="Attribute to fit (repeatable)."
)
@click.option("--all", "all_attributes", is_flag=True, help="Fit every classifier attribute.")
@click.option(
    "--layers",
    default=None,
    help="Force default layers (e.g. '0-3'; one attribute only) instead of measuring.",
)
@click.option(
    "--samples",
    type=click.IntRange(20),
    default=20000,
    show_default=True,
    help="W+ samples rendered and classified for the fits.",
)
@click.option(
    "--ratio",
    type=float,
    default=0.1,
    show_default=True,
    help="Top/bottom fraction of samples used (InterFaceGAN chosen_num_or_ratio).",
)
@click.option(
    "--select-samples",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Fresh samples used to choose the default layers.",
)
@click.option(
    "--distance",
    type=float,
    default=None,
    help="Fixed edit distance (default: chosen by measured edits among --distance-scales × "
    "the centroid gap).",
)
@click.option(
    "--distance-scales",
    default="1,1.5,2,3",
    show_default=True,
    help="Candidate multiples of the centroid gap for the edit-distance choice.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="z sampling seed.")
@click.option("--retrain-classifier", is_flag=True, help="Train the classifier even if present.")
@click.option(
    "--classifier-train",
    type=click.IntRange(1),
    default=20000,
    show_default=True,
    help="Labelled renders for the classifier.",
)
@click.option(
    "--classifier-val",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Held-out renders for its accuracy.",
)
@click.option("--classifier-epochs", type=click.IntRange(1), default=8, show_default=True)
@click.option(
    "--data",
    type=str,
    default=None,
    help="Renderer module:function (default idinvert.training.faces:iter_faces).",
)
@click.option(
    "--data-seed",
    type=int,
    default=0,
    show_default=True,
    help="Classifier training stream (< 2^29).",
)
@click.option(
    "--workers", type=click.IntRange(0), default=2, show_default=True, help="Rendering processes."
)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where the generator and classifier run (cpu, cuda[:i], auto); the classifier, if "
    "it must be trained first, trains on the CPU.",
)
@click.option(
    "--decorrelate-colours/--raw-normals",
    default=True,
    show_default=True,
    help="Project the background/shirt colour directions out of every boundary (faces renderer).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def boundary_command(
    model_dir: Path,
    attributes: tuple[str, ...],
    all_attributes: bool,
    layers: str | None,
    samples: int,
    ratio: float,
    select_samples: int,
    distance: float | None,
    distance_scales: str,
    seed: int,
    retrain_classifier: bool,
    classifier_train: int,
    classifier_val: int,
    classifier_epochs: int,
    data: str | None,
    data_seed: int,
    workers: int,
    threads: int,
    batch_size: int,
    device: str,
    decorrelate_colours: bool,
    progress: bool,
) -> None:
    """Train the attribute classifier (if needed) and fit InterFaceGAN boundaries."""
    import torch

    from idinvert.core.boundaries import parse_layers
    from idinvert.hub.api import load_model
    from idinvert.training.boundary_train import (
        BoundaryTrainConfig,
        ensure_classifier,
        train_boundaries,
    )
    from idinvert.training.classifier import ClassifierTrainConfig
    from idinvert.training.splits import DEFAULT_DATA

    if not attributes and not all_attributes:
        raise click.UsageError("name an --attribute or pass --all")
    torch.set_num_threads(threads)
    try:
        bundle = load_model(model_dir, device)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        ccfg = ClassifierTrainConfig(
            num_train=classifier_train, num_val=classifier_val, epochs=classifier_epochs, seed=seed
        )
        classifier, info = ensure_classifier(
            model_dir,
            bundle.resolution,
            ccfg,
            data or DEFAULT_DATA,
            data_seed,
            workers,
            retrain_classifier,
            progress,
        )
        acc = info.get("metrics", {}).get("accuracy", {})
        click.echo(
            "classifier held-out accuracy: " + ", ".join(f"{a} {v:.3f}" for a, v in acc.items()),
            err=True,
        )
        names = list(attributes) if not all_attributes else list(classifier.config.attributes)
        classifier.to(bundle.device)
        forced = None
        if layers is not None:
            if len(names) != 1:
                raise click.UsageError("--layers needs exactly one --attribute")
            forced = parse_layers(layers, bundle.num_layers)
        cfg = BoundaryTrainConfig(
            num_samples=samples,
            ratio=ratio,
            select_samples=select_samples,
            distance=distance,
            distance_scales=_parse_scales(distance_scales),
            seed=seed,
            batch_size=batch_size,
            decorrelate_colours=decorrelate_colours,
        )
        report = train_boundaries(
            bundle.generator,
            classifier,
            model_dir,
            names,
            cfg,
            forced,
            progress,
            data or DEFAULT_DATA,
        )
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    for name in names:
        e = report["attributes"][name]
        val = [v for v in e["val_accuracy_per_layer"] if v is not None]
        best = next(
            (
                r
                for r in e["layer_selection"]
                if (r["layers"], r["distance"]) == (e["layers"], e["distance"])
            ),
            None,
        )
        extra = (
            f", success {best['success']:.2f}, preserved {best['preserved']:.2f}" if best else ""
        )
        shift = e.get("colour_decorrelation")
        if shift:
            extra += (
                f"; background/shirt shift (8-bit) raw {_levels(shift['raw'])} -> "
                f"{_levels(shift['decorrelated'])}"
            )
        click.echo(
            f"{name}: layers {e['layers']}, distance {e['distance']:.3f}, "
            f"val acc {max(val, default=float('nan')):.3f} (best layer){extra}"
        )
    if isinstance(report.get("colour_regions"), str):
        click.echo(f"colour decorrelation: {report['colour_regions']}", err=True)
    click.echo(f"wrote {len(names)} boundary file(s) to {model_dir / 'boundaries'}")


def _parse_scales(text: str) -> tuple[float, ...]:
    """``"1,1.5,2"`` → ``(1.0, 1.5, 2.0)``; a usage error names a bad entry."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.UsageError(
            f"--distance-scales: expected comma-separated numbers, got {text!r}"
        ) from None


@click.command("export")
@click.option(
    "--encoder",
    "encoder_run",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Encoder run directory (holds the generator it was trained against).",
)
@click.option(
    "--gan",
    "gan_run",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="GAN run (provenance/card; default: the one the encoder run recorded).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to write (e.g. hub/bundled/faces64).",
)
@click.option("--name", default="faces64", show_default=True, help="Model name in config.json.")
@click.option(
    "--perceptual",
    type=click.Choice(["external", "none"]),
    default="external",
    show_default=True,
    help="external: record the torchvision VGG16 config, weights resolved at load "
    "time (not shipped); none: no perceptual network.",
)
@click.option(
    "--extras-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Copy classifier, boundaries, reports and eval.json from here (default: OUT "
    "itself when re-exporting).",
)
@click.option(
    "--eval",
    "eval_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="`idinvert eval` JSON to store and quote in the model card.",
)
@click.option(
    "--note",
    "notes",
    multiple=True,
    help="Recipe note for the model card's 'Training notes' (repeatable).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
def export_command(
    encoder_run: Path,
    gan_run: Path | None,
    out: Path,
    name: str,
    perceptual: str,
    extras_from: Path | None,
    eval_json: Path | None,
    notes: tuple[str, ...],
    overwrite: bool,
) -> None:
    """Assemble a model directory (fp16 safetensors, config.json, model card)."""
    from idinvert.training.export import WEIGHT_BUDGET_MIB, build_model_dir

    try:
        result = build_model_dir(
            encoder_run,
            out,
            gan_run=gan_run,
            name=name,
            perceptual=perceptual,
            extras_from=extras_from,
            eval_json=eval_json,
            overwrite=overwrite,
            notes=notes,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    sizes = ", ".join(f"{k} {v:.2f}" for k, v in result["weights_mib"].items())
    click.echo(
        f"wrote {out}: {sizes} MiB; total {result['total_mib']:.2f} MiB "
        f"(budget {WEIGHT_BUDGET_MIB:g})"
    )


_group = click.Group("train-extra", commands=[encoder_command, boundary_command, export_command])

if __name__ == "__main__":
    _group()
