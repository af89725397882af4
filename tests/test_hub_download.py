"""Model references and Hub downloads against the stand-in Hub (in-process, real HTTP).

The endpoint and cache are passed explicitly (huggingface_hub reads HF_ENDPOINT/HF_HOME at
import); the subprocess tests in test_hub_cli.py cover the environment-variable route.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hub_standin import StandinHub, blackhole, closed_port_url, git_oid, read_folder

from idinvert.core.errors import ModelNotFoundError
from idinvert.core.modeldir import load_model_dir
from idinvert.hub.download import CorruptDownloadError, download_model
from idinvert.hub.integrity import hash_file, safetensors_problem

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests talk to the stand-in: undo an HF_HUB_OFFLINE=1 set for the whole test run
    (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def model_files(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny model directory's files plus a boundary, a card and a stray pickle."""
    from idinvert.core.boundaries import Boundary, save_boundary

    files = read_folder(tiny_model_dir)
    b = tmp_path_factory.mktemp("b") / "smile.safetensors"
    rng = np.random.default_rng(0)
    save_boundary(Boundary("smile", rng.standard_normal((8, 16)).astype(np.float32), [0, 1]), b)
    files["boundaries/smile.safetensors"] = b.read_bytes()
    files["README.md"] = b"---\nlibrary_name: idinvert\n---\n# tiny\n"
    files["official_generator.pth"] = b"\x80\x02pickle that must never be fetched"
    files["eval.json"] = b"{}"  # extras of a model directory travel too
    files["nested/extra.safetensors"] = b"not at the top level: ignored"
    files["boundaries/old.npy"] = b"\x93NUMPY pickle: ignored"
    return files


@pytest.fixture(scope="module")
def hub(model_files: dict) -> StandinHub:
    with StandinHub() as h:
        h.main_sha = h.add_repo("alice/tiny", model_files)
        config = json.loads(model_files["config.json"])
        config["description"] = "dev branch"
        h.dev_sha = h.commit(
            "alice/tiny", {"config.json": json.dumps(config).encode()}, branch="dev"
        )
        h.add_repo("alice/private", model_files, private=True)
        h.add_repo("alice/gated", model_files, gated=True)
        h.add_repo(
            "alice/pickles",
            {
                "styleganinv_ffhq256_generator.pth": b"x" * 10,
                "styleganinv_ffhq256_encoder.pth": b"y" * 10,
            },
        )
        h.add_repo(
            "alice/noencoder", {k: v for k, v in model_files.items() if k != "encoder.safetensors"}
        )
        h.add_repo("alice/broken", model_files)
        yield h


def _get(hub: StandinHub, ref: str, cache: Path, **kw) -> Path:
    repo, _, rev = ref.partition("@")
    return download_model(repo, rev or None, cache_dir=cache, endpoint=hub.url, **kw)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_download_by_commit_sha(hub: StandinHub, tmp_path: Path) -> None:
    folder = _get(hub, f"alice/tiny@{hub.main_sha}", tmp_path)
    assert folder.name == hub.main_sha
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "README.md",
        "boundaries/smile.safetensors",
        "config.json",
        "encoder.safetensors",
        "eval.json",
        "generator.safetensors",
    ]
    assert not hub.requested(contains="nested/") and not hub.requested(contains=".npy")
    bundle = load_model_dir(folder)
    assert bundle.code_shape == (8, 16)
    assert not hub.requested(contains=".pth"), "pickles must never be requested"
    # a pinned, fully cached commit resolves without any network
    assert _get(hub, f"alice/tiny@{hub.main_sha}", tmp_path) == folder
    assert (
        download_model("alice/tiny", hub.main_sha, cache_dir=tmp_path, endpoint=closed_port_url())
        == folder
    )


def test_download_by_branch_and_default(hub: StandinHub, tmp_path: Path) -> None:
    dev = _get(hub, "alice/tiny@dev", tmp_path)
    assert dev.name == hub.dev_sha
    assert json.loads((dev / "config.json").read_text())["description"] == "dev branch"
    refs = tmp_path / "models--alice--tiny" / "refs"
    assert (refs / "dev").read_text() == hub.dev_sha
    main = _get(hub, "alice/tiny", tmp_path)
    assert main.name == hub.main_sha and (refs / "main").read_text() == hub.main_sha


def test_offline_reuse_from_cache(
    hub: StandinHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = _get(hub, "alice/tiny@dev", tmp_path)
    before = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = download_model("alice/tiny", "dev", cache_dir=tmp_path, endpoint=closed_port_url())
    assert offline == online and len(hub.requests) == before
    with pytest.raises(ModelNotFoundError) as exc:
        download_model("alice/tiny", "main", cache_dir=tmp_path, endpoint=hub.url)
    msg = _one_line(exc)
    assert "HF_HUB_OFFLINE" in msg and "alice/tiny@main" in msg and "not" in msg
    assert len(hub.requests) == before


def test_missing_repo_revision_and_file(
    hub: StandinHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/does-not-exist", tmp_path)
    msg = _one_line(exc)
    assert "alice/does-not-exist" in msg and "spelling" in msg and "HF_TOKEN" in msg
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/tiny@no-such-branch", tmp_path)
    assert "no-such-branch" in _one_line(exc) and "alice/tiny" in str(exc.value)
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/noencoder", tmp_path)
    msg = _one_line(exc)
    assert "alice/noencoder@main" in msg and "encoder.safetensors" in msg


def test_private_repo_needs_token(
    hub: StandinHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/private", tmp_path)
    msg = _one_line(exc)
    assert "alice/private" in msg and "private" in msg and "HF_TOKEN" in msg
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token")
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/private", tmp_path)
    assert "the token now in use" in _one_line(exc)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    folder = _get(hub, "alice/private", tmp_path)
    assert load_model_dir(folder).code_shape == (8, 16)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/gated", tmp_path)
    assert "gated" in _one_line(exc) and "HF_TOKEN" in str(exc.value)


def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as exc:
        download_model("alice/tiny", "main", cache_dir=tmp_path, endpoint=closed_port_url())
    refused = time.monotonic() - start
    msg = _one_line(exc)
    assert "cannot reach" in msg and "alice/tiny@main" in msg and "not in the local cache" in msg
    assert refused < 5, refused
    monkeypatch.setenv("IDINVERT_HUB_TIMEOUT", "1")
    with blackhole() as url:
        start = time.monotonic()
        with pytest.raises(ModelNotFoundError) as exc:
            download_model("alice/tiny", "main", cache_dir=tmp_path, endpoint=url)
        silent = time.monotonic() - start
    assert "cannot reach" in _one_line(exc) and silent < 5, silent


def test_unreachable_hub_uses_cache(hub: StandinHub, tmp_path: Path) -> None:
    folder = _get(hub, "alice/tiny@main", tmp_path)
    again = download_model("alice/tiny", "main", cache_dir=tmp_path, endpoint=closed_port_url())
    assert again == folder


@pytest.mark.parametrize("mode", ["flip", "truncate"])
def test_corrupted_download_is_not_cached(hub: StandinHub, tmp_path: Path, mode: str) -> None:
    hub.corrupt("alice/broken", "encoder.safetensors", mode)
    try:
        with pytest.raises(CorruptDownloadError) as exc:
            _get(hub, "alice/broken", tmp_path)
        msg = _one_line(exc)
        assert "alice/broken@main" in msg and "encoder.safetensors" in msg and "re-run" in msg
        storage = tmp_path / "models--alice--broken"
        good = hub.files("alice/broken")["encoder.safetensors"]
        blobs = {p.name for p in (storage / "blobs").iterdir()}
        assert hash_file_bytes(good) not in blobs, "bad blob left in the cache"
        assert not any(storage.glob("snapshots/*/encoder.safetensors"))
        assert not any(storage.glob("snapshots/*/config.json")), "config.json marks complete"
        assert not (storage / "refs" / "main").exists()
    finally:
        hub.corrupt("alice/broken", "encoder.safetensors", None)
    folder = _get(hub, "alice/broken", tmp_path)  # a re-run heals
    assert (folder / "encoder.safetensors").read_bytes() == good


def hash_file_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_pickle_only_repo_is_refused(hub: StandinHub, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as exc:
        _get(hub, "alice/pickles", tmp_path)
    msg = _one_line(exc)
    assert "pickle" in msg and "idinvert convert" in msg and "styleganinv_ffhq256" in msg
    assert not hub.requested(contains="/alice/pickles/resolve/")


def test_integrity_helpers(tmp_path: Path, tiny_model_dir: Path) -> None:
    src = tiny_model_dir / "encoder.safetensors"
    assert safetensors_problem(src) is None
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(src.read_bytes()[:-10])
    assert "truncated" in safetensors_problem(bad)
    bad.write_bytes(b"\xff" * 16)
    assert safetensors_problem(bad) is not None
    cfg = tiny_model_dir / "config.json"
    assert hash_file(cfg, git=True)[1] == git_oid(cfg.read_bytes())


# ----------------------------------------------------------------- references & registry
def test_resolve_local_dir_and_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    from idinvert.hub.resolve import parse_repo_reference, resolve_model

    assert resolve_model(tiny_model_dir) == tiny_model_dir
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not a registry name"):
        resolve_model("no_such_name")
    assert parse_repo_reference("alice/tiny@0123abc") == ("alice/tiny", "0123abc")
    assert parse_repo_reference("alice/tiny@refs/pr/1") == ("alice/tiny", "refs/pr/1")
    assert parse_repo_reference("alice/tiny") == ("alice/tiny", None)
    for bad in ("tiny", "a/b/c", "../x", "alice/tiny@", "/abs/path"):
        assert parse_repo_reference(bad) is None, bad


def test_registry_settings(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idinvert.hub import registry
    from idinvert.hub.resolve import resolve_model

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("IDINVERT_CONFIG", raising=False)
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model("ffhq256")
    msg = _one_line(exc)
    assert "no copy of the official weights" in msg and "idinvert convert" in msg
    assert "IDINVERT_MODEL_FFHQ256" in msg and "idinvert hub publish" in msg
    monkeypatch.setenv("IDINVERT_MODEL_FFHQ256", str(tiny_model_dir))
    assert resolve_model("ffhq256") == tiny_model_dir
    status = registry.entry_status(registry.OFFICIAL_MODELS["ffhq256"])
    assert status == {
        "available": True,
        "reference": str(tiny_model_dir),
        "origin": "IDINVERT_MODEL_FFHQ256",
    }
    monkeypatch.delenv("IDINVERT_MODEL_FFHQ256")
    cfg = tmp_path / "cfg" / "idinvert" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[models]\ntower256 = "{tiny_model_dir}"\nmy-faces = "ffhq256"\n')
    assert resolve_model("tower256") == tiny_model_dir
    with pytest.raises(ModelNotFoundError, match="my-faces.*not configured"):
        resolve_model("my-faces")  # points at an unconfigured official name
    names = [e.name for e in registry.list_entries()]
    assert names[:4] == ["faces64", "ffhq256", "bedroom256", "tower256"] and "my-faces" in names
    cfg.write_text("[models\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        resolve_model("tower256")


def test_bundled_default_absent_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from idinvert.hub import registry
    from idinvert.hub.resolve import resolve_model

    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "nothing")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model(None)
    msg = _one_line(exc)
    assert "faces64" in msg and "not installed" in msg and "--model" in msg


def test_bundled_default_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    import shutil

    from idinvert.hub import registry
    from idinvert.hub.resolve import resolve_model

    shutil.copytree(tiny_model_dir, tmp_path / "bundled" / "faces64")
    (tmp_path / "bundled" / "README.md").write_text("not a model")
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert resolve_model(None) == resolve_model("faces64") == tmp_path / "bundled" / "faces64"
    entry = registry.list_entries()[0]
    assert (entry.name, entry.kind, entry.resolution, entry.num_layers) == (
        "faces64",
        "bundled",
        32,
        8,
    )
    assert registry.entry_status(entry)["available"] is True
    monkeypatch.setenv("IDINVERT_MODEL_FACES64", str(tiny_model_dir))  # a setting wins
    assert resolve_model(None) == tiny_model_dir
