"""End to end through the ``idinvert`` CLI (subprocesses: HF_ENDPOINT/HF_HOME/HF_HUB_OFFLINE
reach huggingface_hub the way users set them) against the stand-in Hub, plus ``hub publish``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import vectors as V
from click.testing import CliRunner
from hub_standin import StandinHub, cli_env, closed_port_url, read_folder, run_cli
from PIL import Image

from idinvert.hub.integrity import hash_file

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process parts talk to the stand-in: undo an HF_HUB_OFFLINE=1 set for the whole run
    (subprocesses get a clean environment from ``cli_env``)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def hub(tiny_model_dir: Path) -> StandinHub:
    with StandinHub() as h:
        h.tiny_sha = h.add_repo("alice/tiny", tiny_model_dir)
        h.add_repo("alice/private", tiny_model_dir, private=True)
        yield h


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "face.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def _error_line(proc) -> str:  # noqa: ANN001
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def test_invert_by_commit_then_offline(hub: StandinHub, image: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path, hub.url)
    ref = f"alice/tiny@{hub.tiny_sha}"
    args = [
        "invert",
        str(image),
        "--model",
        ref,
        "--perceptual-weight",
        "0",
        "--steps",
        "2",
        "--device",
        "cpu",
    ]
    proc = run_cli([*args, "--out", str(tmp_path / "out")], env)
    assert proc.returncode == 0, proc.stderr
    codes = np.load(tmp_path / "out" / "codes.npy")
    assert codes.shape == (1, 8, 16) and codes.dtype == np.float32
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert Path(summary["model"]).name == hub.tiny_sha
    assert (tmp_path / "out" / "face_inv.png").is_file()
    # offline, Hub gone: the pinned commit resolves from the cache (no network at all)
    offline = cli_env(tmp_path, closed_port_url(), HF_HUB_OFFLINE="1")
    proc = run_cli(["hub", "download", ref], offline)
    assert proc.returncode == 0 and Path(proc.stdout.strip()).name == hub.tiny_sha, proc.stderr


def test_hub_download_branch_offline_and_errors(hub: StandinHub, tmp_path: Path) -> None:
    env = cli_env(tmp_path, hub.url)
    proc = run_cli(["hub", "download", "alice/tiny"], env)
    assert proc.returncode == 0, proc.stderr
    snapshot = Path(proc.stdout.strip())
    assert snapshot.name == hub.tiny_sha and (snapshot / "config.json").is_file()
    offline = cli_env(tmp_path, closed_port_url(), HF_HUB_OFFLINE="1")
    proc = run_cli(["hub", "download", "alice/tiny@main"], offline)
    assert proc.returncode == 0 and Path(proc.stdout.strip()) == snapshot, proc.stderr
    line = _error_line(run_cli(["hub", "download", "alice/other"], offline))
    assert "HF_HUB_OFFLINE" in line and "alice/other@main" in line
    line = _error_line(run_cli(["hub", "download", "alice/private"], env))
    assert "alice/private" in line and "HF_TOKEN" in line
    with_token = cli_env(tmp_path, hub.url, HF_TOKEN=hub.token)
    assert run_cli(["hub", "download", "alice/private"], with_token).returncode == 0


def test_unreachable_hub_one_line_nothing_written(image: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path, closed_port_url())
    out = tmp_path / "out"
    start = time.monotonic()
    proc = run_cli(
        [
            "invert",
            str(image),
            "--model",
            "alice/tiny@main",
            "--out",
            str(out),
            "--perceptual-weight",
            "0",
            "--steps",
            "2",
        ],
        env,
    )
    elapsed = time.monotonic() - start
    line = _error_line(proc)
    assert "cannot reach the Hugging Face Hub" in line and "alice/tiny@main" in line
    assert elapsed < 20, elapsed  # process start + torch import included; the Hub part is ~0.5 s
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_models_json(tmp_path: Path) -> None:
    env = cli_env(tmp_path, None, IDINVERT_MODEL_BEDROOM256="someone/idinvert-bedroom256@abc")
    proc = run_cli(["models", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert list(entries)[:4] == ["faces64", "ffhq256", "bedroom256", "tower256"]
    assert entries["faces64"]["kind"] == "bundled"
    ffhq = entries["ffhq256"]
    assert ffhq["available"] is False and ffhq["setting"] == "IDINVERT_MODEL_FFHQ256"
    assert ffhq["resolution"] == 256 and ffhq["num_layers"] == 14 and ffhq["w_dim"] == 512
    assert ffhq["official_files"][:2] == [
        "styleganinv_ffhq256_generator.pth",
        "styleganinv_ffhq256_encoder.pth",
    ]
    assert ffhq["boundaries"]["eyeglasses"] == [0, 1, 2]
    assert ffhq["provenance"]["official_repo"] == "https://github.com/genforce/idinvert_pytorch"
    assert ffhq["provenance"]["arxiv"] == "2004.00049"
    assert any("idinvert convert" in s for s in ffhq["steps"])
    assert any("idinvert hub publish" in s for s in ffhq["steps"])
    bedroom = entries["bedroom256"]
    assert bedroom["available"] is True
    assert bedroom["reference"] == "someone/idinvert-bedroom256@abc"
    assert bedroom["origin"] == "IDINVERT_MODEL_BEDROOM256"
    text = run_cli(["models"], env)
    assert text.returncode == 0 and "idinvert convert" in text.stdout


# ------------------------------------------------------------------------------ publish
@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference vectors' checkpoints converted with two boundaries (+ stray files)."""
    from idinvert.core.boundaries import Boundary, save_boundary
    from idinvert.hub.convert import convert_checkpoints

    d = V.vectors_dir()
    root = tmp_path_factory.mktemp("converted")
    bdir = root / "b"
    bdir.mkdir()
    rng = np.random.default_rng(2)
    for name, layers in (("random", []), ("smile", [0, 1, 2])):
        direction = rng.standard_normal((10, 64)).astype(np.float32)
        save_boundary(Boundary(name, direction, layers, "test"), bdir / f"{name}.safetensors")
    out = convert_checkpoints(
        d / "generator.pth", d / "encoder.pth", root / "testA", boundaries_dir=bdir
    )
    (out / "notes.txt").write_text("not uploaded")
    (out / "boundaries" / "old.npy").write_bytes(b"\x93NUMPY pickle, never uploaded")
    return out


def test_publish_dry_run_card(converted: Path) -> None:
    from huggingface_hub import ModelCard

    from idinvert.cli.hub import hub_group
    from idinvert.core.modeldir import load_model_dir

    result = CliRunner().invoke(
        hub_group,
        [
            "publish",
            str(converted),
            "--repo-id",
            "alice/idinvert-testA",
            "--dry-run",
            "--license",
            "mit",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dry run: nothing uploaded" in result.output
    card_text = (converted / "README.md").read_text()
    card = ModelCard(card_text)
    assert card.data.library_name == "idinvert" and card.data.license == "mit"
    assert {"gan-inversion", "stylegan", "idinvert", "image-editing", "arxiv:2004.00049"} <= set(
        card.data.tags
    )
    prov = json.loads((converted / "config.json").read_text())["provenance"]["converted_from"]
    for part in ("generator", "encoder"):
        assert prov[part]["sha256"] in card_text and prov[part]["file"] in card_text
    assert prov["boundaries"]["smile"]["sha256"] in card_text
    assert "https://arxiv.org/abs/2004.00049" in card_text
    assert "genforce/idinvert_pytorch" in card_text
    bundle = load_model_dir(converted)
    n_gen = sum(p.numel() for p in bundle.generator.parameters())
    assert f"| Parameters: generator | {n_gen:,} |" in card_text
    assert "| W+ code [L, D] | [10, 64] |" in card_text
    assert "| Resolution | 64 x 64 px" in card_text
    assert "| `smile` | 0-2 |" in card_text and "| `random` | 0-9 |" in card_text
    assert "idinvert invert photo.png --model alice/idinvert-testA@main" in card_text
    assert 'load_model("alice/idinvert-testA@main"' in card_text
    listed = {}
    for line in result.output.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[3] == "sha256":
            listed[parts[0]] = (int(parts[1].replace(",", "")), parts[4])
    assert sorted(listed) == [
        "README.md",
        "boundaries/random.safetensors",
        "boundaries/smile.safetensors",
        "config.json",
        "encoder.safetensors",
        "generator.safetensors",
    ]
    for rel, (size, sha) in listed.items():
        assert size == (converted / rel).stat().st_size
        assert sha == hash_file(converted / rel)[0]
    assert "(not uploaded: notes.txt)" in result.output
    assert "(not uploaded: boundaries/old.npy)" in result.output


def test_publish_refuses_broken_dir(
    converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from idinvert.cli.main import main

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "encoder.safetensors"):
        (broken / f).write_bytes((converted / f).read_bytes())
    (broken / "generator.safetensors").write_bytes(
        (converted / "generator.safetensors").read_bytes()[:1000]
    )
    with pytest.raises(SystemExit) as exc:
        main(["hub", "publish", str(broken), "--repo-id", "a/b", "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and len(err.splitlines()) == 1
    assert "generator.safetensors" in err and not (broken / "README.md").exists()


def test_publish_upload_roundtrip(converted: Path, tmp_path: Path) -> None:
    """The real upload path (HfApi.upload_folder, legacy LFS protocol) into the stand-in."""
    from idinvert.hub.download import download_model
    from idinvert.hub.publish import PublishError, prepare, publish

    with StandinHub() as hub:
        env = cli_env(tmp_path, hub.url, HF_TOKEN=hub.token, HF_HUB_DISABLE_XET="1")
        proc = run_cli(
            [
                "hub",
                "publish",
                str(converted),
                "--repo-id",
                "bob/testA",
                "--private",
                "--revision",
                "v1",
                "--commit-message",
                "first upload",
            ],
            env,
        )
        assert proc.returncode == 0, proc.stderr
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("published"))
        sha = line.split("@", 1)[1].split(":", 1)[0]
        assert f"--model bob/testA@{sha}" in proc.stdout
        assert hub.repos["bob/testA"].private and hub.repos["bob/testA"].refs["v1"] == sha
        remote = hub.files("bob/testA", "v1")
        assert "notes.txt" not in remote and "boundaries/old.npy" not in remote
        local = {
            k: v
            for k, v in read_folder(converted).items()
            if k not in ("notes.txt", "boundaries/old.npy")
        }
        assert {k: v for k, v in remote.items() if k != ".gitattributes"} == local
        folder = download_model(
            "bob/testA", "v1", cache_dir=tmp_path / "c", endpoint=hub.url, token=hub.token
        )
        assert folder.name == sha and (folder / "boundaries" / "smile.safetensors").is_file()
        plan = prepare(converted, "bob/other", keep_card=True)
        with pytest.raises(PublishError, match="HF_TOKEN") as exc:
            publish(plan, endpoint=hub.url, token="hf_not_the_right_one")
        assert "\n" not in str(exc.value)
