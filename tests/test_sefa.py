"""The SeFa community plugin (plugins/contrib/sefa): a separate distribution, discovered
through the ``idinvert`` entry point, with an edit operation and a CLI command.

CI installs it with ``pip install -e plugins/contrib/sefa``; if it is missing, the session
fixture below installs it the same way (``--no-deps --no-build-isolation``: offline-safe).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
import tomllib
from click.testing import CliRunner
from plugins_fixtures import run_cli

from idinvert.core import plugins

ROOT = Path(__file__).resolve().parents[1]
SEFA_DIR = ROOT / "plugins" / "contrib" / "sefa"
L, D = 8, 16  # the tiny model


@pytest.fixture(scope="session")
def sefa() -> object:
    """The installed ``idinvert_sefa`` module (installed into the running venv if missing)."""
    try:
        importlib.metadata.distribution("idinvert-sefa")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-e",
                str(SEFA_DIR),
            ],
            check=True,
        )
        importlib.invalidate_caches()
        if str(SEFA_DIR) not in sys.path:  # the editable .pth hook only runs at start-up
            sys.path.append(str(SEFA_DIR))
    return importlib.import_module("idinvert_sefa")


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch: pytest.MonkeyPatch, sefa: object) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset_plugins()
    yield
    plugins.reset_plugins()


@pytest.fixture(scope="module")
def codes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sefa") / "codes.npy"
    np.save(path, np.random.RandomState(1).randn(2, L, D).astype(np.float32))
    return path


def test_sefa_is_discovered_through_the_entry_point() -> None:
    (ep,) = [e for e in importlib.metadata.entry_points(group="idinvert") if e.name == "sefa"]
    assert ep.value == "idinvert_sefa" and ep.dist.metadata["Name"] == "idinvert-sefa"
    info = {i.name: i for i in plugins.plugin_infos()}["sefa"]
    assert (info.status, info.version, info.distribution, info.builtin) == (
        "loaded",
        "0.1.0",
        "idinvert-sefa",
        False,
    )
    assert info.hooks == ["register_commands", "register_edit_operations"]
    assert info.operations == ["sefa"] and info.commands == ["sefa-boundaries"]
    assert plugins.get_edit_operation("sefa").plugin == "sefa"


def test_sefa_is_a_separate_distribution() -> None:
    own = tomllib.loads((SEFA_DIR / "pyproject.toml").read_text())
    assert own["project"]["name"] == "idinvert-sefa" and own["project"]["dependencies"] == [
        "idinvert"
    ]
    assert own["project"]["entry-points"]["idinvert"] == {"sefa": "idinvert_sefa"}
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = main["tool"]["setuptools"]["packages"]
    package_dirs = main["tool"]["setuptools"].get("package-dir", {}).values()
    assert not [p for p in packages if "sefa" in p or "contrib" in p]
    assert not [d for d in package_dirs if "contrib" in d]


def test_disabling_sefa_by_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.DENY_ENV, "idinvert-sefa")
    plugins.reset_plugins()
    assert (
        "sefa" not in plugins.edit_operations()
        and "sefa-boundaries" not in plugins.plugin_commands()
    )


# --------------------------------------------------------------------------- the factorization


def _official_factorize(weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The official genforce/sefa ``factorize_weight`` arithmetic (eig of W Wᵀ on the
    transposed, column-normalised weights), sorted by eigenvalue."""
    weight = np.concatenate([w.T for w in weights], axis=1)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.dot(weight.T))
    order = np.argsort(values.real)[::-1]
    return vectors.T[order].real, values.real[order]


def test_closed_form_factorization_matches_the_official_formula(sefa: object) -> None:
    from idinvert_sefa.factorize import closed_form_factorization

    rng = np.random.RandomState(0)
    weights = [rng.randn(2 * c, D) * s for c, s in ((16, 1.0), (16, 5.0), (8, 0.1))]
    directions, values = closed_form_factorization(weights, 6)
    assert directions.shape == (6, D) and directions.dtype == np.float32
    assert np.all(np.diff(values) <= 0)
    np.testing.assert_allclose(directions @ directions.T, np.eye(6), atol=1e-5)
    ref_dirs, ref_values = _official_factorize(weights)
    np.testing.assert_allclose(values, ref_values[:6], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(directions * ref_dirs[:6], axis=1)), 1.0, atol=1e-5)
    pivots = np.abs(directions).argmax(axis=1)
    assert np.all(directions[np.arange(6), pivots] > 0)  # deterministic sign
    # rows are normalised: rescaling one output unit changes nothing
    weights[0][3] *= 100.0
    np.testing.assert_allclose(closed_form_factorization(weights, 6)[0], directions, atol=1e-5)


def test_factorization_errors_name_the_parameter(sefa: object) -> None:
    from idinvert_sefa.factorize import closed_form_factorization

    with pytest.raises(ValueError, match="^top_k: must be in 1..16"):
        closed_form_factorization([np.ones((4, D))], 17)
    with pytest.raises(ValueError, match="^layers: select at least one layer"):
        closed_form_factorization([], 1)


def test_style_weights_of_the_vectors_model(sefa: object, vectors_model_dir: Path) -> None:
    """Style weights are the official checkpoint's ``style_mod.dense.fc.weight`` [2C, D]."""
    import torch
    import vectors as V

    from idinvert.core.modeldir import load_model_dir
    from idinvert_sefa import directions_for
    from idinvert_sefa.factorize import style_weights

    bundle = load_model_dir(vectors_model_dir)
    weights = style_weights(bundle.generator, range(10))
    assert [w.shape for w in weights] == [(128, 64)] * 8 + [(64, 64)] * 2
    official = torch.load(V.vectors_dir() / "generator.pth", map_location="cpu", weights_only=True)
    np.testing.assert_array_equal(
        weights[3], official["synthesis.layer3.epilogue.style_mod.dense.fc.weight"].double().numpy()
    )
    directions, values, layers = directions_for(bundle, [0, 1], 3)
    assert layers == [0, 1] and directions.shape == (3, 64)
    a = np.concatenate(weights[:2])
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    random = np.random.RandomState(0).randn(100, 64)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    assert np.linalg.norm(a @ directions[0]) >= np.linalg.norm(a @ random.T, axis=0).max()


# --------------------------------------------------------------------------- CLI


def test_edit_sefa(
    tiny_model_dir: Path, codes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from idinvert.core.editing import manipulate

    code, _, err = run_cli(
        [
            "edit",
            "sefa",
            "--codes",
            codes_file,
            "--layers",
            "0-3",
            "--component",
            1,
            "--top-k",
            3,
            "--steps",
            5,
            "--model",
            tiny_model_dir,
            "--out",
            tmp_path,
        ],
        capsys,
    )
    assert code == 0, err
    codes = np.load(tmp_path / "codes.npy")
    directions = np.load(tmp_path / "directions.npy")
    assert codes.shape == (2, 5, L, D) and directions.shape == (3, D)
    assert np.load(tmp_path / "eigenvalues.npy").shape == (3,)
    expected = manipulate(np.load(codes_file), directions[1], -3, 3, 5, [0, 1, 2, 3])
    np.testing.assert_allclose(codes, expected, atol=1e-6)
    assert {"000_strip.png", "001.gif"} <= {p.name for p in tmp_path.iterdir()}


def test_hook_register_commands_sefa_boundaries(
    tiny_model_dir: Path, codes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sefa-boundaries`` writes boundary files that ``edit manipulate`` follows exactly as
    ``edit sefa`` does."""
    group = click.Group("idinvert", commands=plugins.plugin_commands())
    result = CliRunner().invoke(
        group,
        [
            "sefa-boundaries",
            "--model",
            str(tiny_model_dir),
            "--layers",
            "2-5",
            "--top-k",
            2,
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "eigenvalues.npy",
        "sefa_00.safetensors",
        "sefa_01.safetensors",
    ]
    code, _, err = run_cli(
        [
            "edit",
            "manipulate",
            "--codes",
            codes_file,
            "--boundary",
            tmp_path / "b" / "sefa_01.safetensors",
            "--model",
            tiny_model_dir,
            "--out",
            tmp_path / "m",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = run_cli(
        [
            "edit",
            "sefa",
            "--codes",
            codes_file,
            "--layers",
            "2-5",
            "--component",
            1,
            "--top-k",
            2,
            "--model",
            tiny_model_dir,
            "--out",
            tmp_path / "s",
        ],
        capsys,
    )
    assert code == 0, err
    np.testing.assert_allclose(
        np.load(tmp_path / "m" / "codes.npy"), np.load(tmp_path / "s" / "codes.npy"), atol=1e-6
    )
    bad = CliRunner().invoke(
        group,
        [
            "sefa-boundaries",
            "--model",
            str(tiny_model_dir),
            "--layers",
            "9",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "Invalid value for '--layers'" in bad.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--component", "5"], "--component", "must be below top_k (5), got 5"),
        (["--top-k", "17"], "--top-k", "must be in [1, 16], got 17"),
        (["--layers", "0-8"], "--layers", "out of range 0..7"),
    ],
)
def test_edit_sefa_bad_parameters(
    args: list[str],
    option: str,
    message: str,
    tiny_model_dir: Path,
    codes_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(
        [
            "edit",
            "sefa",
            "--codes",
            codes_file,
            *args,
            "--model",
            tiny_model_dir,
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 2 and f"Invalid value for '{option}'" in err and message in " ".join(err.split())
    assert not (tmp_path / "o").exists()
