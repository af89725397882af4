"""``idinvert edit NAME``: one click subcommand per registered edit operation.

Each subcommand is generated from the operation's declaration (:mod:`idinvert.core.edit`):

* one option per input slot (``--codes``; ``--src``/``--dst``; ``--style``/``--content``;
  ``--target``/``--context`` taking one or more files: ``--context a.png b.png``);
* one option per parameter (``center_x`` → ``--center-x``; bool → ``--x/--no-x``; choice →
  a click choice; layers/boundary/string → text), with help, range and default in the help;
* the common ``--model``, ``--out``, ``--device`` and ``--batch-size``
  (:mod:`idinvert.cli.options`).

Values are checked by the declaration (the same code the demo uses); a bad value is reported
as ``Invalid value for '--center-x': ...`` with a non-zero exit and nothing written to --out.
Outputs (all through :func:`~idinvert.core.outputs.staged_output`): ``codes.npy`` (float32),
images by layout (see :func:`write_result`), extra arrays and ``edit.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from idinvert.cli.options import DEVICE, MODEL, OUT, batch_size
from idinvert.core.edit import (
    EditInputs,
    EditOperation,
    EditResult,
    InputError,
    Layout,
    Param,
    ParamError,
    ParamType,
    SlotType,
    params_to_json,
)

#: ``--batch-size`` of the generated edit commands.
EDIT_BATCH_SIZE = batch_size(8, "Images pushed through the networks at once.")

#: Key in ``ctx.meta`` marking that plugin warnings were printed for this invocation.
_WARNED = "idinvert.plugin_warnings_shown"


def warn_plugin_errors(ctx: click.Context | None = None) -> None:
    """Print recorded plugin failures to stderr (once per command invocation)."""
    from idinvert.core.plugins import plugin_errors

    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.meta.get(_WARNED):
        return
    errors = plugin_errors()
    if root is not None:
        root.meta[_WARNED] = True
    for err in errors:
        click.echo(f"Warning: {err}", err=True)


class EditGroup(click.Group):
    """Lists and builds one subcommand per registered edit operation."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from idinvert.core.plugins import edit_operations, operation_conflicts

        warn_plugin_errors(ctx)
        return sorted(set(edit_operations()) | set(operation_conflicts()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from idinvert.core.plugins import (
            OperationConflictError,
            UnknownOperationError,
            get_edit_operation,
        )

        warn_plugin_errors(ctx)
        try:
            op = get_edit_operation(cmd_name)
        except OperationConflictError as exc:
            return _failing_command(cmd_name, str(exc))
        except UnknownOperationError:
            return None
        return build_command(op)


@click.group("edit", cls=EditGroup)
def edit_group() -> None:
    """Edit W+ codes with a registered edit operation.

    Every operation is a plugin (the built-ins too); its options are generated from the
    parameters it declares. Run 'idinvert edit NAME --help' for one operation and
    'idinvert plugins --all' to see where each comes from.
    """


def _failing_command(name: str, message: str) -> click.Command:
    @click.command(
        name, help=f"Unavailable: {message}", context_settings={"ignore_unknown_options": True}
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise click.ClickException(message)

    return command


# --------------------------------------------------------------------------- building


def expand_variadic(args: Sequence[str], options: Sequence[str]) -> list[str]:
    """Rewrite ``--opt a b c`` as ``--opt a --opt b --opt c`` for the given options.

    click options take a fixed number of values; this lets the documented
    ``--context C1.png C2.png`` work while ``--context C1.png --context C2.png`` keeps
    working too. Values stop at the next token that starts with ``-`` (or at ``--``).
    """
    wanted = set(options)
    out: list[str] = []
    current: str | None = None
    seen_value = False
    for i, token in enumerate(args):
        if token == "--":
            out.extend(args[i:])
            break
        if token.startswith("-") and len(token) > 1:
            head, eq, _ = token.partition("=")
            current = head if head in wanted else None
            seen_value = bool(eq)
            out.append(token)
            continue
        if current is not None:
            if seen_value:
                out.append(current)
            seen_value = True
        out.append(token)
    return out


class _OperationCommand(click.Command):
    """A click command whose multi-file options accept several values after one flag."""

    def __init__(self, *args: Any, variadic: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.variadic = tuple(variadic)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_variadic(args, self.variadic))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _param_option(p: Param) -> click.Option:
    """The click option of one declared parameter (defaults are applied by the declaration)."""
    bits = [p.help.rstrip(".") + "." if p.help else ""]
    lo = None if callable(p.min) else p.min
    hi = None if callable(p.max) else p.max
    if lo is not None or hi is not None:
        bits.append(
            f"Range: {'-inf' if lo is None else _fmt(lo)}..{'inf' if hi is None else _fmt(hi)}."
        )
    if p.type is ParamType.LAYERS:
        bits.append("Syntax: '0-5', '0,2,4' or 'all'.")
    if p.required:
        bits.append("Required.")
    elif p.default_help:
        bits.append(f"Default: {p.default_help}.")
    elif p.default is not None and not callable(p.default) and p.type is not ParamType.BOOL:
        bits.append(f"Default: {_fmt(p.default)}.")
    help_text = " ".join(b for b in bits if b)
    if p.type is ParamType.BOOL:
        dashed = p.name.replace("_", "-")
        return click.Option(
            [f"--{dashed}/--no-{dashed}", p.name],
            default=None,
            help=help_text + f" Default: {'on' if p.default else 'off'}.",
        )
    types: dict[ParamType, Any] = {
        ParamType.INT: click.INT,
        ParamType.FLOAT: click.FLOAT,
        ParamType.STRING: click.STRING,
        ParamType.LAYERS: click.STRING,
        ParamType.BOUNDARY: click.STRING,
    }
    metavars = {ParamType.LAYERS: "LAYERS", ParamType.BOUNDARY: "NAME|FILE"}
    if p.type is ParamType.CHOICE:
        click_type: Any = click.Choice(list(p.choices))
    else:
        click_type = types[p.type]
    return click.Option(
        [p.option_name, p.name],
        type=click_type,
        default=None,
        help=help_text,
        metavar=metavars.get(p.type),
    )


def build_command(op: EditOperation) -> click.Command:
    """The ``idinvert edit OP`` command generated from ``op``'s declaration."""
    params: list[click.Parameter] = []
    variadic = []
    for slot in op.inputs.slots:
        option = f"--{slot.name}"
        if slot.multiple:
            variadic.append(option)
        params.append(
            click.Option(
                [option, f"slot_{slot.name}"],
                required=True,
                multiple=slot.multiple,
                type=click.Path(dir_okay=False, path_type=Path),
                help=slot.help + (" One or more files." if slot.multiple else ""),
                metavar="FILE..." if slot.multiple else "FILE",
            )
        )
    params.extend(_param_option(p) for p in op.params)
    params.extend(o.option() for o in (MODEL, OUT, DEVICE, EDIT_BATCH_SIZE))
    plugin_note = f"\n\n(From plugin {op.plugin}.)" if op.plugin else ""
    help_text = (
        f"{op.title}: {op.description}\n\nWrites OUT/codes.npy (float32, layout "
        f"'{op.layout.value}'), images{' and GIFs' if op.layout is Layout.SEQUENCES else ''} "
        f"and OUT/edit.json.{plugin_note}"
    )

    def callback(**kwargs: Any) -> None:
        run_command(op, kwargs)

    return _OperationCommand(
        op.name,
        params=params,
        callback=callback,
        help=help_text,
        short_help=op.title,
        variadic=variadic,
    )


# --------------------------------------------------------------------------- running


def _load_inputs(
    op: EditOperation, kwargs: dict[str, Any], bundle: Any
) -> tuple[EditInputs, dict[str, Any]]:
    import numpy as np

    from idinvert.cli.commands import unique_stems
    from idinvert.core.codes import load_codes
    from idinvert.core.errors import IdinvertError
    from idinvert.core.images import load_for_model

    arrays: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    record: dict[str, Any] = {}
    for slot in op.inputs.slots:
        value = kwargs[f"slot_{slot.name}"]
        paths = list(value) if slot.multiple else [value]
        record[slot.name] = [str(p) for p in paths] if slot.multiple else str(value)
        try:
            if slot.type is SlotType.CODES:
                arrays[slot.name] = np.concatenate([load_codes(p) for p in paths])
            else:
                arrays[slot.name] = np.stack([load_for_model(p, bundle.resolution) for p in paths])
                names[slot.name] = unique_stems(paths)
        except (IdinvertError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint=f"'--{slot.name}'") from None
    return EditInputs(arrays, names), record


def _option_hint(op: EditOperation, name: str) -> str:
    try:
        return f"'{op.param(name).option_name}'"
    except KeyError:
        return f"'--{name.replace('_', '-')}'"


def run_command(op: EditOperation, kwargs: dict[str, Any]) -> None:
    """Load the model and inputs, run ``op`` and write its outputs to ``--out``."""
    from tqdm.auto import tqdm

    from idinvert.core.edit import run_edit
    from idinvert.core.outputs import staged_output
    from idinvert.hub.api import load_model

    warn_plugin_errors(click.get_current_context(silent=True))
    out_dir: Path = kwargs["out_dir"]
    bundle = load_model(kwargs["model_ref"], kwargs["device"])
    inputs, record = _load_inputs(op, kwargs, bundle)
    values = {p.name: kwargs[p.name] for p in op.params if kwargs.get(p.name) is not None}
    bar: Any = None

    def progress(done: int, total: int, description: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description or op.name, unit="step")
        bar.update(done - bar.n)

    try:
        result = run_edit(
            op, bundle, inputs, values, progress=progress, batch_size=kwargs["batch_size"]
        )
    except ParamError as exc:
        raise click.BadParameter(exc.message, param_hint=_option_hint(op, exc.param)) from None
    except InputError as exc:
        raise click.BadParameter(exc.message, param_hint=f"'--{exc.slot}'") from None
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "operation": op.name,
        "plugin": op.plugin,
        "model": str(bundle.path) if bundle.path else kwargs["model_ref"],
        "inputs": record,
        "params": params_to_json(result.params),
        "layout": result.layout.value,
        "codes_shape": list(result.codes.shape),
        "info": result.info,
    }
    with staged_output(out_dir) as stage:
        files = write_result(bundle, result, stage, summary, batch_size=kwargs["batch_size"])
    click.echo(
        f"{op.name}: codes {list(result.codes.shape)} and {len(files) - 1} other file(s) "
        f"-> {out_dir}"
    )


# --------------------------------------------------------------------------- writing


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "item"


def write_result(
    bundle: Any,
    result: EditResult,
    folder: Path,
    summary: dict[str, Any] | None = None,
    batch_size: int = 8,
) -> list[str]:
    """Write an :class:`EditResult` into ``folder`` (normally a staging directory).

    Files:
        * ``codes.npy``: float32 codes as returned.
        * ``batch``: ``NAME.png`` per code, ``NAME_LABEL.png`` per extra image.
        * ``sequences``: ``NAME_SSS.png`` per frame, ``NAME_strip.png`` (frames side by side),
          ``NAME.gif`` (forth and back).
        * ``grid``: ``grid.png`` (rows × columns) and ``ROW_COLUMN.png`` per cell.
        * ``KEY.npy`` per extra array; ``edit.json`` with ``summary``.

    Returns:
        The written file names.
    """
    import numpy as np

    from idinvert.core.codes import save_codes
    from idinvert.core.edit import synthesize_result
    from idinvert.core.images import image_grid, save_gif, save_png

    written: list[str] = []

    def png(image: np.ndarray, name: str) -> None:
        save_png(image, folder / name)
        written.append(name)

    save_codes(result.codes, folder / "codes.npy")
    written.append("codes.npy")
    images = synthesize_result(bundle, result, batch_size)
    names = [_safe(n) for n in result.item_names()]
    if result.layout is Layout.BATCH:
        for i, name in enumerate(names):
            png(images[i], f"{name}.png")
            for label, extra in result.extra_images.items():
                png(np.asarray(extra)[i], f"{name}_{_safe(label)}.png")
    elif result.layout is Layout.SEQUENCES:
        for i, name in enumerate(names):
            frames = images[i]
            for s, frame in enumerate(frames):
                png(frame, f"{name}_{s:03d}.png")
            png(np.concatenate(list(frames), axis=1), f"{name}_strip.png")
            save_gif(list(frames), folder / f"{name}.gif")
            written.append(f"{name}.gif")
    else:
        rows, cols = images.shape[:2]
        col_names = [_safe(n) for n in result.column_item_names()]
        png(image_grid(images.reshape(rows * cols, *images.shape[2:]), cols), "grid.png")
        for r in range(rows):
            for c in range(cols):
                png(images[r, c], f"{names[r]}_{col_names[c]}.png")
    for key, arr in result.arrays.items():
        np.save(folder / f"{key}.npy", np.asarray(arr), allow_pickle=False)
        written.append(f"{key}.npy")
    if summary is not None:
        data = dict(summary, files=sorted(written + ["edit.json"]))
        (folder / "edit.json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        written.append("edit.json")
    return written


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
