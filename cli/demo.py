"""``idinvert demo``: start the Gradio app (offline on the bundled model by default)."""

from __future__ import annotations

import os

import click

from idinvert.cli.options import DEVICE, MODEL
from idinvert.core.runtime import use_short_openmp_spinning


@click.command("demo")
@MODEL.with_help(
    "Built-in name, model directory or Hub repo id (default: bundled model, or $IDINVERT_MODEL)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@DEVICE
@click.option(
    "--max-steps",
    default=300,
    show_default=True,
    type=click.IntRange(0, 100000),
    help="Server-side cap on optimization steps.",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1, 1024),
    help="CPU threads of the server's compute thread (default: all cores).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Inversion arithmetic: auto = bf16 where the device computes it natively "
    "(AMX/AVX-512-BF16 CPUs, recent GPUs), else fp32 (the official numbers).",
)
@click.option("--share", is_flag=True, help="Create a public gradio.live link (needs internet).")
def demo_command(
    model_ref: str | None,
    host: str,
    port: int,
    device: str,
    max_steps: int,
    threads: int | None,
    precision: str,
    share: bool,
) -> None:
    """Start the web demo: invert photos and edit them with every registered plugin."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    use_short_openmp_spinning()  # before torch (main() did it already for `idinvert demo`)
    from idinvert.demo.app import build_demo, launch_kwargs
    from idinvert.demo.service import DemoLimits

    limits = DemoLimits(
        max_steps=max_steps,
        default_steps=min(100, max_steps),
        torch_threads=threads,
        precision=precision,
    )
    blocks = build_demo(model_ref, device, limits)
    click.echo(f"idinvert demo on http://{host}:{port}  (Ctrl-C to stop)")
    blocks.launch(server_name=host, server_port=port, share=share, **launch_kwargs(limits))
