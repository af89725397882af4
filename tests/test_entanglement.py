"""Tests of the background/shirt colour entanglement measure and its removal
(training/entanglement.py and its use in boundary_train.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from idinvert.core.modeldir import load_model_dir, save_model_dir
from idinvert.training import boundary_train as bt
from idinvert.training import entanglement as ent
from idinvert.training.classifier import AttributeClassifier, ClassifierConfig
from idinvert.training.faces import face_rng, render_face_array, sample_params

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def maps32() -> ent.RegionMaps:
    maps = ent.region_maps(32, count=64)
    assert maps is not None
    return maps


def test_regions_are_where_every_face_shows_background_or_shirt(maps32: ent.RegionMaps) -> None:
    bg, shirt = maps32.masks
    assert maps32.names == ("background", "shirt") and bg.shape == (32, 32)
    assert bg[0, 0] and bg[0, 31] and bg[10, 1] and not bg[14, 16]  # corners yes, face no
    assert shirt[31, 8] and not shirt[0, 0] and not shirt[14, 16]  # lower left, not the face
    assert not (bg & shirt).any()
    fractions = maps32.fractions()
    assert 0.25 < fractions["background"] < 0.6 and 0.02 < fractions["shirt"] < 0.2
    # in faces the maps never saw, the regions take the colours the renderer was given there
    bg_ok, shirt_ok = [], []
    for index in range(6):
        params = dataclasses.replace(
            sample_params(face_rng(12345, index)),
            bg_color_a=(0.2, 0.4, 0.6),
            bg_color_b=(0.2, 0.4, 0.6),
            bg_texture=0.0,
            bg_blobs=0,
            noise_level=0.0,
            shirt_color=(0.9, 0.1, 0.1),
        )
        img = render_face_array(params, 32).astype(int)
        bg_ok.append((np.abs(img[bg.numpy()] - [51, 102, 153]).max(1) <= 2).mean())
        red = img[shirt.numpy()]
        shirt_ok.append((red[:, 0] > red[:, 1] + 60).mean())
    assert np.mean(bg_ok) > 0.9 and np.mean(shirt_ok) > 0.9, (bg_ok, shirt_ok)
    assert ent.region_maps(32, data="mypkg.render:faces") is None
    with pytest.raises(ValueError, match="no pixel is"):
        ent.region_maps(16, count=4, agreement=1.01)


def test_colour_shift_in_8_bit_levels(maps32: ent.RegionMaps) -> None:
    before = torch.zeros(4, 3, 32, 32)
    after = before.clone()
    bg = maps32.masks[0]
    after[:2, :, bg] += 20 / 255  # +10 levels ([-1, 1] spans 255 levels in 2 units)
    after[2:, 0, bg] -= 40 / 255  # −20 levels on the red channel only
    shift = ent.colour_shift(before, after, maps32)
    assert shift["background"]["mean_abs"] == pytest.approx((10 * 2 + 20 / 3 * 2) / 4, abs=1e-3)
    # signed mean change per channel: red (10 + 10 − 20 − 20) / 4 = −5, green/blue +5
    assert shift["background"]["systematic"] == pytest.approx(5.0, abs=1e-3)
    assert shift["shirt"] == {"mean_abs": 0.0, "systematic": 0.0}
    colours = ent.region_colours(after, maps32)
    assert colours.shape == (4, 2, 3)
    assert colours[0, 0].tolist() == pytest.approx([0.5 + 10 / 255] * 3, abs=1e-5)


def _tiny_generator(w_dim: int = 32):
    from conftest import build_tiny_bundle

    return build_tiny_bundle(resolution=32, w_dim=w_dim).generator


def test_colour_jacobian_matches_finite_differences(maps32: ent.RegionMaps) -> None:
    G = _tiny_generator()
    codes = bt.sample_codes(G, 8, seed=3).double().float()
    jac = ent.colour_jacobian(G, codes, maps32, batch_size=3)
    assert jac.shape == (G.num_layers, 6, 32) and jac.dtype == torch.float64
    eps = 1e-2
    for layer, dim in ((0, 5), (G.num_layers - 1, 17)):
        plus, minus = codes.clone(), codes.clone()
        plus[:, layer, dim] += eps
        minus[:, layer, dim] -= eps
        with torch.no_grad():
            diff = ent.region_colours(G.synthesis(plus), maps32) - ent.region_colours(
                G.synthesis(minus), maps32
            )
        numeric = (diff / (2 * eps)).mean(0).flatten().double()
        assert torch.allclose(jac[layer, :, dim], numeric, atol=2e-3, rtol=0.05), (layer, dim)


def test_removing_colour_components() -> None:
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(3, 6, 32, generator=gen, dtype=torch.float64)
    jac[2] = 0  # a layer that does not move the colours
    direction = torch.randn(3, 32, generator=gen).numpy()
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    out = ent.remove_colour_components(direction, jac)
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    for layer in range(2):
        assert np.abs(jac[layer].numpy() @ out[layer]).max() < 1e-5
        assert float(out[layer] @ direction[layer]) > 0.5  # the rest of the normal is kept
    assert np.allclose(out[2], direction[2])
    inside = jac[0, :2].sum(0).numpy()  # a row entirely inside the colour directions
    kept = ent.remove_colour_components(np.stack([inside / np.linalg.norm(inside)] * 3), jac)
    assert np.allclose(kept[0], inside / np.linalg.norm(inside), atol=1e-6)


def test_boundaries_are_decorrelated_and_report_the_shift(tmp_path: Path) -> None:
    from conftest import build_tiny_bundle

    bundle = build_tiny_bundle(resolution=32, w_dim=32)
    model_dir = save_model_dir(bundle, tmp_path / "model")
    G = load_model_dir(model_dir).generator
    torch.manual_seed(0)
    clf = AttributeClassifier(ClassifierConfig(32, ("a", "b"), 4, 8, 8)).eval()
    cfg = bt.BoundaryTrainConfig(num_samples=300, select_samples=32, ratio=0.2, distance=0.3)
    report = bt.train_boundaries(G, clf, model_dir, ["a"], cfg)
    assert report["colour_regions"]["fraction_of_image"]["shirt"] > 0
    entry = report["attributes"]["a"]
    raw, dec = entry["colour_decorrelation"]["raw"], entry["colour_decorrelation"]["decorrelated"]
    assert set(raw) == {"success", "preserved", "colour_shift"}
    for region in ("background", "shirt"):  # small edit: the first-order removal shows
        assert dec["colour_shift"][region]["systematic"] < 0.3 * max(
            raw["colour_shift"][region]["systematic"], 1e-3
        )
    assert all(0.3 < c <= 1.0 for c in entry["cosine_raw_decorrelated_per_layer"])
    plain = bt.train_boundaries(
        G,
        clf,
        model_dir,
        ["a"],
        bt.BoundaryTrainConfig(**{**cfg.to_dict(), "decorrelate_colours": False}),
    )
    assert "colour_decorrelation" not in plain["attributes"]["a"]
    other = bt.train_boundaries(G, clf, model_dir, ["b"], cfg, data="mypkg.render:faces")
    assert other["colour_regions"].startswith("not decorrelated: mypkg.render:faces")
    assert "colour_decorrelation" not in other["attributes"]["b"]
