"""``idinvert plugins``: list plugins with their version, hooks and registrations.

Semantics (as ``datasette plugins``): without ``--all`` only third-party plugins are listed
(installed through the ``idinvert`` entry-point group or registered at runtime); ``--all``
adds the built-in plugins (``idinvert.plugins.*``). Disabled plugins (allow/deny lists) and
plugins that failed are listed with their status; failures are also printed as warnings.
"""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins_command(show_all: bool, as_json: bool) -> None:
    """List installed plugins: name, version, status, hooks, operations and commands.

    Third-party plugins are found through the 'idinvert' entry-point group.
    IDINVERT_PLUGINS=a,b loads only the listed third-party plugins;
    IDINVERT_DISABLE_PLUGINS=a,b disables plugins (built-ins too).
    """
    from idinvert.cli.edit import warn_plugin_errors
    from idinvert.core.plugins import plugin_infos

    infos = plugin_infos(include_builtins=show_all)
    warn_plugin_errors(click.get_current_context(silent=True))
    if as_json:
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    if not infos:
        click.echo(
            "No plugins installed." + ("" if show_all else " (--all lists the built-in ones.)")
        )
        return
    header = ("NAME", "VERSION", "STATUS", "HOOKS", "PROVIDES")
    rows = []
    for i in infos:
        provides = [f"edit {o}" for o in i.operations] + [f"command {c}" for c in i.commands]
        rows.append(
            (
                i.name,
                i.version or "-",
                i.status,
                ", ".join(i.hooks) or "-",
                ", ".join(provides) or "-",
            )
        )
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
