"""The plugin manager (core/plugins.py), hookspecs and ``idinvert plugins``.

Third-party plugins are real distributions found through the ``idinvert`` entry-point group:
``tests/plugins_fixtures/site`` holds plugin modules with their ``*.dist-info`` folders and is
put on ``sys.path``; ``IDINVERT_PLUGINS`` (the allow-list) selects which ones a test loads.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from plugins_fixtures import FIXTURE_PLUGINS, SITE, purge_fixture_modules, run_cli

from idinvert.core import hookspecs, plugins
from idinvert.core.edit import EditOperation
from idinvert.core.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_OPS = ["interpolate", "manipulate", "diffuse", "mix"]


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh plugin state, no allow/deny lists from the environment."""
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset_plugins()
    yield
    plugins.reset_plugins()
    purge_fixture_modules()


@pytest.fixture
def fixture_site(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the fixture distributions discoverable (only those allowed per test load)."""
    monkeypatch.syspath_prepend(str(SITE))
    purge_fixture_modules()
    return SITE


def allow(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setenv(plugins.ALLOW_ENV, ",".join(names))
    plugins.reset_plugins()


def errors_by_plugin() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in plugins.plugin_errors():
        out.setdefault(e.plugin, []).append(f"{e.stage}: {e.message}")
    return out


# --------------------------------------------------------------------------- manager


def test_builtins_are_registered_through_the_hooks() -> None:
    pm = plugins.load_plugins()
    assert pm.project_name == "idinvert"
    for module_name in plugins.DEFAULT_PLUGINS:
        plugin = pm.get_plugin(module_name)
        assert plugin is sys.modules[module_name]
        assert [h.name for h in pm.get_hookcallers(plugin)] == ["register_edit_operations"]
    ops = plugins.edit_operations()
    assert list(ops)[:4] == BUILTIN_OPS
    assert {ops[n].plugin for n in BUILTIN_OPS} == set(plugins.DEFAULT_PLUGINS)
    assert all(isinstance(op, EditOperation) for op in ops.values())


def test_load_plugins_is_lazy_and_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = plugins._load_entry_points
    monkeypatch.setattr(plugins, "_load_entry_points", lambda *a: (calls.append(1), real(*a)))
    assert calls == []  # nothing happens at import or reset
    pm = plugins.load_plugins()
    assert plugins.load_plugins() is pm
    plugins.edit_operations()
    plugins.plugin_errors()
    assert calls == [1]


def test_loading_plugins_and_building_commands_imports_no_torch() -> None:
    import subprocess

    code = (
        "import sys; from idinvert.core.plugins import edit_operations, plugin_errors; "
        "from idinvert.cli.edit import build_command; plugin_errors(); "
        "[build_command(op) for op in edit_operations().values()]; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_plugin_is_discovered(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    allow(monkeypatch, "fixture-good")
    assert "scale-codes" in plugins.edit_operations()
    op = plugins.get_edit_operation("scale-codes")
    assert op.plugin == "fixture-good"
    info = {i.name: i for i in plugins.plugin_infos()}["fixture-good"]
    assert (info.status, info.version, info.distribution, info.builtin) == (
        "loaded",
        "0.1",
        "idinvert-fixture-good",
        False,
    )
    assert info.hooks == ["register_edit_operations"] and info.operations == ["scale-codes"]
    assert plugins.plugin_errors() == []


def test_allow_list_loads_only_named_plugins(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    allow(monkeypatch)  # set but empty: no third-party plugin at all
    assert list(plugins.edit_operations()) == BUILTIN_OPS
    infos = plugins.plugin_infos()
    assert {i.name for i in infos} >= set(FIXTURE_PLUGINS)
    assert {i.status for i in infos} == {"disabled"}
    assert "idinvert_fixture_broken_import" not in sys.modules  # never imported
    allow(monkeypatch, "idinvert-fixture-good")  # distribution names work too
    assert "scale-codes" in plugins.edit_operations()


def test_deny_list_blocks_builtins_and_third_party(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    monkeypatch.setenv(plugins.DENY_ENV, "idinvert.plugins.mix, fixture-good")
    allow(monkeypatch, "fixture-good")
    pm = plugins.load_plugins()
    assert pm.is_blocked("idinvert.plugins.mix") and pm.is_blocked("fixture-good")
    assert list(plugins.edit_operations()) == ["interpolate", "manipulate", "diffuse"]
    status = {i.name: i.status for i in plugins.plugin_infos(include_builtins=True)}
    assert status["idinvert.plugins.mix"] == "disabled" and status["fixture-good"] == "disabled"


def test_broken_import_is_recorded_and_the_rest_works(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    allow(monkeypatch, "fixture-broken-import", "fixture-good")
    assert "scale-codes" in plugins.edit_operations()
    errors = errors_by_plugin()
    assert errors == {
        "fixture-broken-import": ["import: RuntimeError: fixture plugin exploded at import"]
    }
    info = {i.name: i for i in plugins.plugin_infos()}["fixture-broken-import"]
    assert info.status == "error" and info.hooks == []


def test_hook_that_raises_is_recorded_and_contributes_nothing(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    allow(monkeypatch, "fixture-raises", "fixture-good")
    ops = plugins.edit_operations()
    assert "half-registered" not in ops and "scale-codes" in ops
    assert errors_by_plugin() == {
        "fixture-raises": [
            "register_edit_operations: KeyError: 'fixture plugin failed inside its hook'"
        ]
    }


def test_misspelled_hook_is_caught_by_check_pending(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    allow(monkeypatch, "fixture-typo", "fixture-good")
    pm = plugins.load_plugins()
    assert pm.get_plugin("fixture-typo") is None  # unregistered after check_pending failed
    (message,) = errors_by_plugin()["fixture-typo"]
    assert message.startswith("validate: ") and "register_edit_operation" in message
    assert "scale-codes" in plugins.edit_operations()


def test_duplicate_operation_names_fail_loudly_naming_both(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path
) -> None:
    allow(monkeypatch, "fixture-duplicate")
    assert "interpolate" not in plugins.edit_operations()
    assert plugins.operation_conflicts() == {
        "interpolate": ["idinvert.plugins.interpolate", "fixture-duplicate"]
    }
    with pytest.raises(
        plugins.OperationConflictError, match="'idinvert.plugins.interpolate', 'fixture-duplicate'"
    ):
        plugins.get_edit_operation("interpolate")
    (message,) = errors_by_plugin()["fixture-duplicate"]
    assert "already registered by plugin 'idinvert.plugins.interpolate'" in message
    assert "IDINVERT_DISABLE_PLUGINS=fixture-duplicate" in message


def test_unknown_operation_lists_the_known_ones() -> None:
    with pytest.raises(
        plugins.UnknownOperationError,
        match="no edit operation 'nope'; available: diffuse, interpolate",
    ):
        plugins.get_edit_operation("nope")


def test_runtime_registration_validates_like_installed_plugins() -> None:
    class Bad:
        @hookimpl
        def register_edit_operations(self, register) -> None:
            register("not an operation")

    class Twice:
        @hookimpl
        def register_edit_operations(self, register) -> None:
            from idinvert.plugins.mix import OPERATION

            register(replace(OPERATION, name="again"))
            register(replace(OPERATION, name="again"))

    assert plugins.register_plugin(Bad(), "bad") == "bad"
    assert plugins.register_plugin(Twice(), "twice") == "twice"
    errors = errors_by_plugin()
    assert errors["bad"] == [
        "register_edit_operations: TypeError: register() takes an EditOperation, got str"
    ]
    assert "registered twice by the same plugin" in errors["twice"][0]
    assert "again" not in plugins.edit_operations()

    class Reentrant:
        @hookimpl
        def register_edit_operations(self, register) -> None:
            plugins.get_edit_operation("mix")

    plugins.register_plugin(Reentrant(), "reentrant")
    (message,) = errors_by_plugin()["reentrant"]
    assert message.startswith("register_edit_operations: RuntimeError: ")
    assert "requested from inside a registration hook" in message
    assert plugins.register_plugin(Reentrant(), "reentrant") is None  # the name is taken
    assert any("name already used by another plugin" in e for e in errors_by_plugin()["reentrant"])
    plugins.reset_plugins()  # runtime registrations are gone
    assert plugins.plugin_errors() == [] and "again" not in plugins.edit_operations()


def test_wrong_hook_signature_is_recorded() -> None:
    module = types.ModuleType("wrong_signature")

    @hookimpl
    def register_edit_operations(register, extra) -> None:
        pass

    module.register_edit_operations = register_edit_operations
    assert plugins.register_plugin(module, "wrong-signature") is None
    (message,) = errors_by_plugin()["wrong-signature"]
    assert message.startswith("register: ") and "extra" in message
    assert set(BUILTIN_OPS) <= set(plugins.edit_operations())


# --------------------------------------------------------------------------- hooks


def test_hook_register_edit_operations() -> None:
    module = types.ModuleType("runtime_plugin")
    base = plugins.get_edit_operation("interpolate")

    @hookimpl
    def register_edit_operations(register) -> None:
        register(EditOperation("walk", "Walk", "A walk.", base.inputs, base.params, base.run))

    module.register_edit_operations = register_edit_operations
    assert plugins.register_plugin(module, "runtime-plugin") == "runtime-plugin"
    op = plugins.get_edit_operation("walk")
    assert op.plugin == "runtime-plugin" and list(plugins.edit_operations())[-1] == "walk"


def test_hook_register_commands(monkeypatch: pytest.MonkeyPatch, fixture_site: Path) -> None:
    allow(monkeypatch, "fixture-bad-command")
    from idinvert.cli.main import SUBCOMMANDS

    commands = plugins.plugin_commands(reserved=SUBCOMMANDS)
    assert list(commands) == ["fixture-hello"]  # 'invert' clashes with the built-in
    assert list(plugins.plugin_commands(reserved=SUBCOMMANDS)) == ["fixture-hello"]
    (message,) = errors_by_plugin()["fixture-bad-command"]
    assert "'invert' is a built-in command" in message
    group = click.Group("idinvert", commands=plugins.plugin_commands(reserved=SUBCOMMANDS))
    result = CliRunner().invoke(group, ["fixture-hello", "--name", "plugins"])
    assert result.exit_code == 0 and result.output == "hello plugins\n"
    info = {i.name: i for i in plugins.plugin_infos()}["fixture-bad-command"]
    assert info.commands == ["fixture-hello"] and info.hooks == ["register_commands"]


def test_plugin_commands_reach_the_idinvert_cli(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from idinvert.cli import main as cli_module

    allow(monkeypatch, "fixture-bad-command")
    assert "fixture-hello" in cli_module.cli.list_commands(click.Context(cli_module.cli))
    assert run_cli(["fixture-hello"], capsys)[:2] == (0, "hello world\n")


def _hookspec_names() -> list[str]:
    return sorted(
        name
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "idinvert_spec")
    )


def test_hookspecs_are_typed_and_documented() -> None:
    import inspect

    names = _hookspec_names()
    assert names == ["register_commands", "register_edit_operations"]
    for name in names:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert doc.splitlines()[0].endswith("."), name
        for arg in inspect.signature(fn).parameters.values():
            assert arg.annotation is not inspect.Parameter.empty, (name, arg.name)
            assert f":param {arg.name}:" in doc, (name, arg.name)


def test_every_hook_has_a_test_and_is_documented() -> None:
    """datasette-style meta-test: a ``test_hook_<name>`` per hookspec and a docs section."""
    tests = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        tests |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    docs = (ROOT / "docs" / "plugins.md").read_text()
    headings = set(re.findall(r"^### (\w+)\(", docs, flags=re.M))
    for name in _hookspec_names():
        assert f"test_hook_{name}" in tests, f"no test_hook_{name}"
        assert name in headings, f"docs/plugins.md has no '### {name}(...)' section"


# --------------------------------------------------------------------------- idinvert plugins


def test_plugins_command_lists_third_party_only_by_default(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allow(monkeypatch, "fixture-good")
    code, out, err = run_cli(["plugins"], capsys)
    assert code == 0 and err == ""
    assert "fixture-good" in out and "edit scale-codes" in out
    assert "idinvert.plugins" not in out
    code, out, _ = run_cli(["plugins", "--all"], capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STATUS", "HOOKS", "PROVIDES"]
    assert [ln.split()[0] for ln in lines[1:5]] == list(plugins.DEFAULT_PLUGINS)


def test_plugins_command_json_reports_errors(
    monkeypatch: pytest.MonkeyPatch, fixture_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allow(monkeypatch, "fixture-good", "fixture-broken-import")
    code, out, err = run_cli(["plugins", "--json", "--all"], capsys)
    assert code == 0
    data = {d["name"]: d for d in json.loads(out)}
    assert data["idinvert.plugins.diffuse"]["operations"] == ["diffuse"]
    assert data["idinvert.plugins.diffuse"]["builtin"] is True
    assert data["fixture-good"]["version"] == "0.1"
    broken = data["fixture-broken-import"]
    assert broken["status"] == "error" and "exploded at import" in broken["errors"][0]
    assert "Warning: plugin 'fixture-broken-import' failed (import)" in err


def test_plugins_command_without_plugins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    allow(monkeypatch)
    code, out, _ = run_cli(["plugins"], capsys)
    assert code == 0
    assert out.startswith("NAME") or "No plugins installed" in out  # disabled ones still listed
    code, out, _ = run_cli(["plugins", "--json"], capsys)
    assert all(d["status"] == "disabled" for d in json.loads(out))
