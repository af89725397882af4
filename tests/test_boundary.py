"""Tests of the attribute classifier and boundary fitting (classifier.py, boundary_train.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from idinvert.core.boundaries import load_boundary, model_boundaries
from idinvert.core.modeldir import load_model_dir, save_model_dir
from idinvert.training import boundary_train as bt
from idinvert.training.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    load_classifier,
    predict_logits,
    save_classifier,
    train_classifier,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planted(n: int, num_layers: int, dim: int, seed: int = 0):
    """Codes whose attribute t moves every layer along its own planted unit direction."""
    gen = torch.Generator().manual_seed(seed)
    normals = torch.randn(num_layers, dim, generator=gen)
    normals /= normals.norm(dim=1, keepdim=True)
    t = torch.randn(n, generator=gen)
    codes = torch.randn(n, num_layers, dim, generator=gen) + 1.5 * t[:, None, None] * normals
    codes += torch.randn(num_layers, dim, generator=gen)  # an offset: the fit has an intercept
    return codes, t, normals.numpy()


def test_fit_boundary_recovers_a_planted_direction() -> None:
    codes, t, normals = _planted(2000, 4, 16)
    fits = bt.fit_boundary(codes, t, ratio=0.2, split=0.7, l2=1e-3)
    direction = np.stack([f.normal for f in fits])
    assert direction.shape == (4, 16) and direction.dtype == np.float32
    assert np.allclose(np.linalg.norm(direction, axis=1), 1.0, atol=1e-5)
    cosines = (direction * normals).sum(1)
    assert (cosines > 0.9).all(), cosines  # right direction and right sign
    assert all(f.val_accuracy is not None and f.val_accuracy > 0.9 for f in fits)
    fits_neg = bt.fit_boundary(codes, -t, ratio=0.2)
    assert ((np.stack([f.normal for f in fits_neg]) * normals).sum(1) < -0.9).all()


def test_fit_logistic_and_centroid_gap_on_a_toy_problem() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.2], [3.0, 0.1], [4.0, -0.1]]) + 10.0
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    normal, offset = bt.fit_logistic(x, y, l2=1e-3)
    assert normal[0] > 0.9 and abs(np.linalg.norm(normal) - 1) < 1e-6
    assert ((x.double() @ torch.from_numpy(normal).double() + offset > 0) == y.bool()).all()
    gap = bt.centroid_gap(x[:, None, :], y, normal[None])
    assert gap.shape == (1,) and gap[0] > 2.5
    assert bt.centroid_gap(x[:, None, :], torch.ones(4), normal[None])[0] == 0


def test_layer_candidates_and_edit_helpers() -> None:
    assert bt.layer_candidates(6) == [
        [0, 1],
        [2, 3],
        [4, 5],
        [0, 1, 2, 3],
        [2, 3, 4, 5],
        [0, 1, 2, 3, 4, 5],
    ]
    codes = torch.zeros(2, 3, 2)
    direction = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    out = bt.edit_codes(codes, direction, [0, 1], torch.tensor([2.0, -1.0]))
    assert out[0].tolist() == [[2, 0], [0, 2], [0, 0]] and out[1, 1].tolist() == [0, -1]
    before = torch.tensor([[True, False, True], [False, False, True]])
    after = torch.tensor([[False, False, True], [False, True, True]])
    success, preserved = bt.edit_effect(before, after, attr=0)
    assert success == 0.5 and preserved == 0.75
    with pytest.raises(ValueError):
        bt.BoundaryTrainConfig(ratio=0.7)


def _toy_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """16 px images with two learnable attributes: bright left half, red tint."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 2, generator=gen) > 0.5).to(torch.uint8)
    x = torch.rand(n, 3, 16, 16, generator=gen) * 0.6 - 0.3
    x[:, :, :, :8] += labels[:, 0].float().view(-1, 1, 1, 1) * 0.6 - 0.3
    x[:, 0] += labels[:, 1].float().view(-1, 1, 1) * 0.6 - 0.3
    return x.clamp(-1, 1), labels


def test_classifier_learns_above_chance_and_round_trips(tmp_path: Path) -> None:
    x, y = _toy_images(384, 0)
    vx, vy = _toy_images(128, 1)
    cfg = ClassifierTrainConfig(
        epochs=6, batch_size=32, lr=2e-3, channels=8, channels_max=16, hidden=16
    )
    net, metrics = train_classifier(x, y, ("left", "red"), cfg, vx, vy)
    assert set(metrics["accuracy"]) == {"left", "red"}
    assert min(metrics["accuracy"].values()) > 0.8, metrics
    save_classifier(net, tmp_path, {"metrics": metrics})
    loaded, info = load_classifier(tmp_path)
    assert info["config"]["attributes"] == ["left", "red"] and info["metrics"] == metrics
    assert torch.allclose(predict_logits(loaded, vx), predict_logits(net, vx), atol=0.05)
    with pytest.raises(ValueError):
        loaded(torch.zeros(1, 3, 8, 8))


def test_train_boundaries_writes_unit_boundaries(tmp_path: Path) -> None:
    from conftest import build_tiny_bundle

    model_dir = save_model_dir(build_tiny_bundle(resolution=16, w_dim=8), tmp_path / "model")
    bundle = load_model_dir(model_dir)
    torch.manual_seed(0)
    clf = AttributeClassifier(ClassifierConfig(16, ("a", "b", "c"), 4, 8, 8)).eval()
    cfg = bt.BoundaryTrainConfig(num_samples=300, select_samples=16, ratio=0.2)
    report = bt.train_boundaries(bundle.generator, clf, model_dir, ["a", "c"], cfg)
    files = model_boundaries(model_dir)
    assert sorted(files) == ["a", "c"]
    for name in ("a", "c"):
        b = load_boundary(files[name])
        assert b.direction.shape == (bundle.num_layers, 8)
        assert np.allclose(np.linalg.norm(b.direction, axis=1), 1.0, atol=1e-5)
        entry = report["attributes"][name]
        assert b.layers == entry["layers"] and b.layers in bt.layer_candidates(bundle.num_layers)
        table = entry["layer_selection"]
        assert entry["distance"] > 0 and len(table) == 6 * len(cfg.distance_scales)
        assert all(0 <= r["success"] <= 1 and 0 <= r["preserved"] <= 1 for r in table)
        # every range is tried at every multiple of its centroid gap; the chosen pair scores best
        gaps = np.array(entry["centroid_gap_per_layer"])
        for r in table[: len(cfg.distance_scales)]:
            assert r["layers"] == table[0]["layers"]
        tried = sorted(r["distance"] for r in table if r["layers"] == entry["layers"])
        expected = sorted(s * gaps[entry["layers"]].mean() for s in cfg.distance_scales)
        assert np.allclose(tried, expected, atol=1e-3)
        key = (entry["layers"], entry["distance"])
        chosen = [r for r in table if (r["layers"], r["distance"]) == key]
        assert len(chosen) == 1
        assert chosen[0]["score"] >= max(r["score"] for r in table) - 0.01
    # the fitted normal separates the classifier's extreme samples on the sampled codes
    codes = bt.sample_codes(bundle.generator, 300, cfg.seed)
    logits = bt.classify_codes(bundle.generator, clf, codes)
    d = torch.from_numpy(load_boundary(files["a"]).direction)
    proj = torch.einsum("nld,ld->n", codes, d)
    assert torch.corrcoef(torch.stack([proj, logits[:, 0]]))[0, 1] > 0.3
    again = bt.train_boundaries(bundle.generator, clf, model_dir, ["b"], cfg, layers=[0, 1])
    assert set(again["attributes"]) == {"a", "b", "c"}  # the report is merged
    assert load_boundary(model_boundaries(model_dir)["b"]).layers == [0, 1]
    b_gaps = np.array(again["attributes"]["b"]["centroid_gap_per_layer"])
    assert again["attributes"]["b"]["distance"] == pytest.approx(b_gaps[[0, 1]].mean(), abs=1e-3)
    fixed = bt.BoundaryTrainConfig(num_samples=300, select_samples=16, ratio=0.2, distance=0.5)
    report = bt.train_boundaries(bundle.generator, clf, model_dir, ["a"], fixed)
    assert report["attributes"]["a"]["distance"] == 0.5
    assert {r["distance"] for r in report["attributes"]["a"]["layer_selection"]} == {0.5}
    with pytest.raises(ValueError, match="distance_scales"):
        bt.BoundaryTrainConfig(distance_scales=(1.0, -2.0))
    with pytest.raises(ValueError, match="unknown attributes"):
        bt.train_boundaries(bundle.generator, clf, model_dir, ["smile"], cfg)
