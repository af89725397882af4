"""Click options and command plumbing shared by ``idinvert train gan`` and ``train encoder``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

RUN_DIR_HELP = "Run directory (checkpoint.pt, log.jsonl, samples/)."


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` launch (or not launched by torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def stack(*decorators: Decorator) -> Decorator:
    """Apply ``decorators`` as if written top to bottom above a function."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def run_dir_options(resume_help: str) -> Decorator:
    """``--out RUN_DIR`` (required) and ``--resume/--no-resume`` (default on)."""
    return stack(
        click.option(
            "--out",
            "out",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help=RUN_DIR_HELP,
        ),
        click.option("--resume/--no-resume", default=True, show_default=True, help=resume_help),
    )


def device_option() -> Decorator:
    return click.option(
        "--device",
        type=str,
        default=None,
        help="cpu (default), cuda[:i] or auto. CUDA: one process, TF32, pinned batches; raise "
        "--workers so the renderers keep up (about 150-200 faces/s per worker at 64 px).",
    )


def channels_last_option() -> Decorator:
    return click.option("--channels-last/--no-channels-last", default=None)


def output_options(grid_help: str) -> Decorator:
    """``--sample-every``, ``--log-every``, ``--grid`` and ``--progress/--no-progress``."""
    return stack(
        click.option("--sample-every", type=int, default=None, help="Sample grid every N steps."),
        click.option("--log-every", type=int, default=None, help="log.jsonl line every N steps."),
        click.option("--grid", type=int, default=None, help=grid_help),
        click.option("--progress/--no-progress", default=None, help="tqdm progress bar."),
    )


def explicit_fields(options: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """Config fields of the options given on the command line (``None`` = not given)."""
    return {fields[k]: v for k, v in options.items() if v is not None}


def base_config(out: Path, resume: bool, checkpoint_file: str, load_run_config: Any) -> Any:
    """The stored config of ``out`` when resuming an existing run, else ``None``."""
    existing = (out / checkpoint_file).is_file()
    return load_run_config(out) if resume and existing else None


def run_training(train: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict:
    """``train(*args, **kwargs)`` with ``ValueError``/``RuntimeError`` as click errors."""
    try:
        return train(*args, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


def end_state(result: dict[str, Any]) -> str:
    """``"done"`` or ``"stopped (checkpoint saved)"`` for a trainer's summary."""
    return "stopped (checkpoint saved)" if result["stopped"] else "done"
