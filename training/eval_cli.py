"""``idinvert eval``: compare encoder-only, MSE-only and in-domain inversion on held-out renders.

:data:`eval_command` is listed (imported lazily) in ``cli/main.py``'s ``SUBCOMMANDS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval")
@click.option(
    "--model",
    "-m",
    "model_ref",
    default=None,
    metavar="REF",
    help="Model directory or reference (default: the bundled model). It must hold "
    "classifier.safetensors and boundaries/ (idinvert train boundary).",
)
@click.option(
    "--n",
    "n",
    type=click.IntRange(1, 100000),
    default=64,
    show_default=True,
    help="Held-out renders to invert.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**30 - 1),
    default=0,
    show_default=True,
    help="Eval stream: faces 0..n-1 of data set 2^30 + SEED (never used in training).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full result here.",
)
@click.option(
    "--steps",
    type=click.IntRange(0, 100000),
    default=100,
    show_default=True,
    help="Optimisation steps of both optimising methods.",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True)
@click.option(
    "--perceptual-weight",
    type=click.FloatRange(min=0),
    default=5e-5,
    show_default=True,
    help="In-domain VGG weight (0 if no VGG weights are found).",
)
@click.option("--domain-weight", type=click.FloatRange(min=0), default=2.0, show_default=True)
@click.option(
    "--baseline-init",
    type=click.Choice(["encoder", "mean"]),
    default="encoder",
    show_default=True,
    help="Start of the MSE-only baseline: E(x) (official -E ablation) or w_avg "
    "(Image2StyleGAN-style).",
)
@click.option(
    "--distance",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Edit distance for all boundaries (default: each boundary's measured one).",
)
@click.option(
    "--attribute",
    "-a",
    "attributes",
    multiple=True,
    help="Evaluate only these boundaries (repeatable).",
)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option(
    "--lpips/--no-lpips",
    default=True,
    show_default=True,
    help="LPIPS when real VGG weights are available.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, mps.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads.")
@click.option(
    "--workers", type=click.IntRange(0), default=0, show_default=True, help="Rendering processes."
)
@click.option(
    "--gen-n",
    type=click.IntRange(0, 1_000_000),
    default=5000,
    show_default=True,
    help="Generator section: KID/FID between this many samples (psi 1) and as many held-out "
    "renders on VGG16 relu5_3 mean-pooled features, plus the classifier's label rates (0 skips).",
)
@click.option(
    "--gen-image-size",
    type=click.IntRange(32, 512),
    default=64,
    show_default=True,
    help="VGG16 input side of the generator section.",
)
@click.option(
    "--generator-only",
    is_flag=True,
    help="Only the generator section (no inversion; needs no boundaries).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def eval_command(
    model_ref: str | None,
    n: int,
    seed: int,
    json_out: Path | None,
    steps: int,
    lr: float,
    perceptual_weight: float,
    domain_weight: float,
    baseline_init: str,
    distance: float | None,
    attributes: tuple[str, ...],
    batch_size: int,
    lpips: bool,
    device: str,
    threads: int | None,
    workers: int,
    gen_n: int,
    gen_image_size: int,
    generator_only: bool,
    progress: bool,
) -> None:
    """Evaluate reconstruction and editing of a model on held-out renders."""
    import torch

    from idinvert.core.device import resolve_device
    from idinvert.hub.resolve import resolve_model
    from idinvert.training.evaluate import (
        EvalConfig,
        evaluate,
        evaluate_generator,
        format_generator,
        format_table,
    )

    if threads:
        torch.set_num_threads(threads)
    model_dir = resolve_model(model_ref)
    cfg = EvalConfig(
        n=n,
        seed=seed,
        steps=steps,
        lr=lr,
        perceptual_weight=perceptual_weight,
        domain_weight=domain_weight,
        baseline_init=baseline_init,
        batch_size=batch_size,
        distance=distance,
        attributes=tuple(attributes) or None,
        lpips=lpips,
        workers=workers,
        gen_n=gen_n if gen_n != 1 else 2,
        gen_image_size=gen_image_size,
    )
    if generator_only and gen_n == 0:
        raise click.UsageError("--generator-only needs --gen-n > 0")
    try:
        target = resolve_device(device)
        if target.type == "cuda":  # the eval's figures are float32 on every device
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if generator_only:
            result = evaluate_generator(model_dir, cfg, target, progress)
        else:
            result = evaluate(model_dir, cfg, target, progress=progress)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if generator_only:
        click.echo("\n".join(format_generator(result["generator"])))
    else:
        click.echo(format_table(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {json_out}")
