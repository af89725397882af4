"""The ``idinvert`` command line.

Subcommands live in their own modules and are imported lazily, so ``idinvert --help`` is fast
and a broken optional part (a plugin, the demo's dependencies) cannot take the others down.
Errors meant for users (:class:`~idinvert.core.errors.IdinvertError`, ``ValueError`` from
argument checks) are printed as one line without a traceback, with a non-zero exit code.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from idinvert.core.errors import IdinvertError
from idinvert.core.runtime import use_short_openmp_spinning

#: name → ("module", "attribute", "short help") of every subcommand.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("idinvert.cli.demo", "demo_command", "Start the Gradio web demo (the main job)."),
    "invert": ("idinvert.cli.commands", "invert_command", "Invert images into W+ codes."),
    "render": ("idinvert.cli.commands", "render_command", "Render W+ codes to images."),
    "sample": ("idinvert.cli.commands", "sample_command", "Random images from a model."),
    "edit": (
        "idinvert.cli.edit",
        "edit_group",
        "Edit codes with a registered edit operation.",
    ),
    "convert": (
        "idinvert.cli.convert",
        "convert_command",
        "Official checkpoints -> model directory.",
    ),
    "models": ("idinvert.cli.hub", "models_command", "List the known models."),
    "hub": ("idinvert.cli.hub", "hub_group", "Publish to and download from the Hugging Face Hub."),
    "plugins": ("idinvert.cli.plugins", "plugins_command", "List installed plugins."),
    "space": ("idinvert.cli.space", "space_group", "Export a Hugging Face Space folder."),
    "data": ("idinvert.training.data_cli", "data_group", "Render the synthetic face dataset."),
    "train": (
        "idinvert.training.train_cli",
        "train_group",
        "Train a GAN, encoder or boundary.",
    ),
    "eval": ("idinvert.training.eval_cli", "eval_command", "Evaluate inversion and editing."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS) | set(_plugin_commands()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name not in SUBCOMMANDS:
            return _plugin_commands().get(cmd_name)
        module_name, attr, short_help = SUBCOMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an optional dependency (e.g. gradio) is missing
            return _unavailable(cmd_name, short_help, f"missing dependency {exc.name!r}")
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in SUBCOMMANDS:
                rows.append((name, SUBCOMMANDS[name][2]))
            else:
                cmd = self.get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str()))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _plugin_commands() -> dict[str, click.Command]:
    """CLI commands registered by plugins (``register_commands`` hook); never fatal."""
    try:
        from idinvert.core.plugins import plugin_commands

        return plugin_commands(reserved=SUBCOMMANDS)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
        logging.getLogger(__name__).warning("plugin commands unavailable: %s", exc)
        return {}


def _unavailable(name: str, short_help: str, reason: str) -> click.Command:
    @click.command(name=name, help=f"{short_help}\n\nUnavailable here: {reason}.")
    def command() -> None:
        raise click.ClickException(
            f"'{name}' is unavailable: {reason}; reinstall idinvert with its extras"
        )

    return command


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("idinvert")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="idinvert")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """idinvert: In-Domain GAN Inversion for real image editing.

    Invert real photos into the W+ space of a StyleGAN with a domain-guided encoder and
    domain-regularized optimization, then edit them with plugins. Without --model the
    bundled offline model is used.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors for user mistakes, non-zero exit codes."""
    use_short_openmp_spinning()  # before any subcommand imports torch
    try:
        cli.main(args=argv, prog_name="idinvert", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (IdinvertError, ValueError, FileExistsError, NotADirectoryError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
