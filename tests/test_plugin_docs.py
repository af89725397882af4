"""docs/plugins.md cannot silently rot: its tutorial plugin is extracted from the Markdown,
installed with pip (its own ``pyproject.toml``, the real ``idinvert`` entry point), and run
through the CLI (``idinvert edit jitter``), the demo service and a real Gradio server; every
Python snippet of the document is complete (runs or registers as written)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
from plugins_fixtures import launch_demo, run_cli

from idinvert.core import plugins

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
L, D = 8, 16  # the tiny model


def _section(title: str) -> str:
    """The Markdown from heading ``title`` to the next heading of the same or a higher level."""
    text = DOCS.read_text()
    start = text.index(f"\n{title}\n") + len(title) + 2
    level = len(title) - len(title.lstrip("#"))
    end = re.search(rf"^#{{1,{level}}} ", text[start:], flags=re.M)
    return text[start : start + end.start() if end else len(text)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def jitter_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's package written from the docs and pip-installed into a folder."""
    root = tmp_path_factory.mktemp("jitter")
    package = root / "idinvert-jitter"
    package.mkdir()
    (toml,) = _blocks(_section("### 1. The package"), "toml")
    (code,) = _blocks(_section("### 2. The code"), "python")
    (package / "pyproject.toml").write_text(toml)
    (package / "idinvert_jitter.py").write_text(code)
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--target", str(site), str(package)],
        check=True,
        capture_output=True,
    )
    return site


@pytest.fixture
def jitter(jitter_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The installed tutorial plugin, the only third-party plugin loaded."""
    monkeypatch.syspath_prepend(str(jitter_site))
    monkeypatch.setenv(plugins.ALLOW_ENV, "jitter")
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset_plugins()
    yield
    plugins.reset_plugins()
    sys.modules.pop("idinvert_jitter", None)


def test_a_first_plugin_needs_five_names_from_one_import() -> None:
    (code,) = _blocks(_section("### 2. The code"), "python")
    imports = [
        node
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("idinvert")
    ]
    assert [node.module for node in imports] == ["idinvert.plugins"]
    assert len(imports[0].names) <= 5


def test_the_installed_tutorial_plugin_is_listed(
    jitter: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["plugins"], capsys)
    assert code == 0 and err == ""
    (row,) = [line.split() for line in out.splitlines() if line.startswith("jitter")]
    assert row[:4] == ["jitter", "0.1.0", "loaded", "register_edit_operations"]
    code, out, _ = run_cli(["edit", "jitter", "--help"], capsys)
    assert code == 0
    for option in ("--codes", "--sigma", "--steps", "--layers", "--seed", "--model", "--out"):
        assert option in out


def test_the_tutorial_plugin_runs_in_the_cli(
    jitter: None, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    codes_file = tmp_path / "codes.npy"
    a = np.random.default_rng(0).standard_normal((2, L, D)).astype(np.float32)
    np.save(codes_file, a)
    out = tmp_path / "jitter"
    args = ["edit", "jitter", "--codes", codes_file, "--model", tiny_model_dir]
    code, _, err = run_cli([*args, "--sigma", 0.3, "--layers", "0-3", "--out", out], capsys)
    assert code == 0, err
    codes = np.load(out / "codes.npy")
    assert codes.shape == (2, 5, L, D)  # the documented [N, 5, L, D]
    np.testing.assert_array_equal(codes[:, :, 4:], np.repeat(a[:, None, 4:], 5, axis=1))
    assert not np.allclose(codes[:, :, :4], a[:, None, :4])
    names = {p.name for p in out.iterdir()}
    assert {"000_000.png", "000_strip.png", "000.gif", "edit.json"} <= names
    code, _, err = run_cli([*args, "--layers", "0-20", "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "Invalid value for '--layers': layer indices" in err
    assert not (tmp_path / "bad").exists()


def test_the_tutorial_plugin_runs_in_the_demo_service(jitter: None, tiny_model_dir: Path) -> None:
    """The demo's path: controls' values (an empty layer picker) → run_edit → images."""
    from idinvert.demo.service import endpoint_name, result_frames, run_operation
    from idinvert.hub.api import load_model

    op = plugins.get_edit_operation("jitter")
    bundle = load_model(str(tiny_model_dir), "cpu")
    codes = np.zeros((1, *bundle.code_shape), np.float32)
    params = {"sigma": 0.2, "steps": 3, "layers": None, "seed": 1}
    result, images = run_operation(bundle, op, {"codes": codes}, params)
    assert result.params["layers"] == list(range(L))  # None never reaches the plugin
    assert result.info["layers"] == list(range(L))
    assert images.shape == (1, 3, 32, 32, 3) and len(result_frames(result, images)) == 3
    assert endpoint_name(op) == "edit_jitter"


def test_the_tutorial_plugin_is_a_demo_endpoint(jitter: None, demo_model_dir: Path) -> None:
    gradio_client = pytest.importorskip("gradio_client")
    from idinvert.demo.service import DemoLimits

    blocks, url = launch_demo(demo_model_dir, DemoLimits(max_steps=5))
    try:
        client = gradio_client.Client(url, verbose=False)
        api = client.view_api(return_format="dict")["named_endpoints"]
        names = [p["parameter_name"] for p in api["/edit_jitter"]["parameters"]]
        assert names == ["sigma", "steps", "layers", "seed"]
        client.predict(0, api_name="/sample")
        gallery, gif, codes = client.predict(0.3, 5, ["0", "1"], 0, api_name="/edit_jitter")
        assert len(gallery) == 5 and np.load(codes).shape == (1, 5, L, D)
    finally:
        blocks.close()


def test_the_test_it_snippet_runs_as_written(jitter: None, jitter_site: Path) -> None:
    (snippet,) = _blocks(_section("### 4. Test it"), "python")
    exec(compile(snippet, "docs/plugins.md: 4. Test it", "exec"), {})


def test_the_hook_reference_snippets_are_complete() -> None:
    """Each snippet imports what it uses; ``register_commands``'s really adds its command."""
    section = _section("## Hook reference")
    edit_snippet, commands_snippet = _blocks(section, "python")
    namespace: dict = {"OPERATION": object()}
    exec(compile(edit_snippet, "register_edit_operations", "exec"), namespace)
    registered: list = []
    namespace["register_edit_operations"](registered.append)
    assert registered == [namespace["OPERATION"]]
    module = types.ModuleType("docs_commands")
    exec(compile(commands_snippet, "register_commands", "exec"), module.__dict__)
    group = click.Group("idinvert")
    module.register_commands(group)
    assert list(group.commands) == ["sefa-boundaries"]
