"""InterFaceGAN-style attribute boundaries in the W+ space of our generator.

For every attribute (Shen et al., *InterFaceGAN*, CVPR 2020, as used by IDInvert §4.3):

1. draw ``num_samples`` z ~ N(0, I), map them to W+ codes ``[N, L, D]`` **without truncation**
   (ψ = 1), render, and score every image with the attribute classifier (logits);
2. keep the ``ratio`` most confident positives and negatives (InterFaceGAN's
   ``chosen_num_or_ratio``; the middle of the score distribution is ambiguous), split them
   ``split`` / ``1 − split`` into fitting and validation sets;
3. per layer ``l``, fit an L2-regularised logistic regression on ``w_l`` (centred and divided
   by one global scale, so W's geometry is kept; L-BFGS in float64; for separable data it
   approaches the max-margin normal of InterFaceGAN's linear SVM, without adding sklearn) and
   map its weight back to W coordinates: the boundary row is that normal, unit-norm, pointing
   towards label 1. Result ``[1, L, D]`` like the official files;
4. **default layers and edit distance** — edit held-out samples (``select_samples`` fresh
   codes) towards the other side of the attribute on each candidate range of *whole resolution
   blocks* (layers ``2a .. 2b+1``) by each candidate distance, re-classify and score
   ``success × preserved``: success = fraction whose attribute prediction flips to the target
   side, preserved = fraction of the other attributes' predictions left unchanged. The
   candidate distances of a range are ``distance_scales`` × its *centroid gap* (the mean gap
   between the positive and negative class centroids of the signed projection ``⟨w_l, n_l⟩``,
   all samples, classifier labels, averaged over the range's layers: moving a typical sample
   by it crosses from one class centroid to the other; if the samples hold one class only,
   twice the projection's standard deviation). The highest score wins; pairs within 0.01 of it
   are broken in favour of fewer layers, then a shorter distance, then coarser layers. The
   distance is recorded in ``boundary_report.json`` and is ``idinvert eval``'s default.
   A fixed ``distance`` replaces the candidate distances.
5. **colour decorrelation** (``decorrelate_colours``, on by default, faces renderer only): before
   step 4, every layer row of the normal is projected onto the orthogonal complement of how that
   layer moves the background and shirt colours (mean Jacobian over ``jacobian_samples`` fitting
   codes, :mod:`idinvert.training.entanglement`), so edits stop repainting the background and the
   shirt to first order. The report keeps, at the chosen layers and distance, the colour shift
   (8-bit levels) and success/preservation of the raw and of the decorrelated normal.

Outputs in the model directory: ``boundaries/<attribute>.safetensors`` (via
:func:`idinvert.core.boundaries.save_boundary`) and ``boundary_report.json``; the classifier is
trained first if the directory has none (``classifier.safetensors`` + ``classifier.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from idinvert.core.boundaries import Boundary, save_boundary
from idinvert.core.models.generator import Generator
from idinvert.training.classifier import (
    CLASSIFIER_JSON,
    AttributeClassifier,
    ClassifierTrainConfig,
    load_classifier,
    predict_logits,
    save_classifier,
    train_classifier,
)
from idinvert.training.entanglement import (
    RegionMaps,
    colour_jacobian,
    colour_shift,
    region_maps,
    remove_colour_components,
)
from idinvert.training.splits import (
    DEFAULT_DATA,
    check_train_seed,
    render_faces,
    to_float_images,
    validation_seed,
)

BOUNDARY_DIR = "boundaries"
REPORT_FILE = "boundary_report.json"
REPORT_FORMAT = "idinvert-boundary-report"


@dataclass
class BoundaryTrainConfig:
    """Settings of boundary fitting (see the module docstring).

    Attributes:
        num_samples: W+ samples rendered and classified for fitting.
        ratio: fraction of samples taken from each end of the classifier's logit ranking.
        split: fitting fraction of the chosen samples (the rest validates).
        l2: L2 weight of the logistic regression (on centred, globally scaled features).
        select_samples: fresh samples used to choose the default layers.
        distance: fixed edit distance (``None`` = chosen among ``distance_scales`` × the
            measured centroid gap).
        distance_scales: candidate multiples of the centroid gap for the distance choice.
        seed: seed of the z samples.
        batch_size: render/classify batch.
        decorrelate_colours: project the background/shirt colour directions out of the normals
            (faces renderer only; see the module docstring).
        jacobian_samples: fitting codes averaged in the colour Jacobian.
    """

    num_samples: int = 20000
    ratio: float = 0.1
    split: float = 0.7
    l2: float = 1e-2
    select_samples: int = 256
    distance: float | None = None
    distance_scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    seed: int = 0
    batch_size: int = 64
    decorrelate_colours: bool = True
    jacobian_samples: int = 256

    def __post_init__(self) -> None:
        self.distance_scales = tuple(float(x) for x in self.distance_scales)
        if not self.distance_scales or not all(x > 0 for x in self.distance_scales):
            raise ValueError(
                f"distance_scales must be positive numbers, got {self.distance_scales}"
            )
        if not 0 < self.ratio <= 0.5:
            raise ValueError(f"ratio must be in (0, 0.5], got {self.ratio}")
        if not 0 < self.split < 1:
            raise ValueError(f"split must be in (0, 1), got {self.split}")
        if self.num_samples < 20 or self.select_samples < 1 or self.batch_size < 1:
            raise ValueError("num_samples (>= 20), select_samples and batch_size must be positive")
        if self.jacobian_samples < 1:
            raise ValueError(f"jacobian_samples must be positive, got {self.jacobian_samples}")
        if self.distance is not None and not self.distance > 0:
            raise ValueError(f"distance must be > 0, got {self.distance}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Sampling and scoring


@torch.no_grad()
def sample_codes(G: Generator, num: int, seed: int, batch_size: int = 256) -> torch.Tensor:
    """``num`` W+ codes ``[num, L, D]`` of ``G`` from z ~ N(0, I) (seeded), ψ = 1."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, G.config.z_dim, generator=gen)
    device = next(G.parameters()).device
    return torch.cat(
        [G.z_to_wp(zc.to(device), psi=1.0).float().cpu() for zc in z.split(batch_size)]
    )


@torch.no_grad()
def classify_codes(
    G: Generator,
    classifier: AttributeClassifier,
    codes: torch.Tensor,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Render ``codes [N, L, D]`` (fixed noise) and return classifier logits ``[N, A]``."""
    device = next(G.parameters()).device
    out = []
    for chunk in codes.split(batch_size):
        images = G.synthesis(chunk.to(device)).clamp(-1, 1)
        out.append(predict_logits(classifier, images, batch_size))
        if progress is not None:
            progress(chunk.shape[0])
    return torch.cat(out) if out else torch.zeros(0, len(classifier.config.attributes))


def select_extremes(scores: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the ``ratio·N`` highest (positives) and lowest (negatives) ``scores [N]``."""
    n = scores.shape[0]
    k = max(int(round(n * ratio)), 1)
    order = torch.argsort(scores, descending=True)
    return order[:k], order[-k:]


# ---------------------------------------------------------------------------------------------
# Linear fits


@dataclass
class LinearFit:
    """A separating hyperplane ``⟨normal, x⟩ + offset = 0`` (``normal`` unit-norm, pointing to
    label 1) with its accuracies."""

    normal: np.ndarray
    offset: float
    train_accuracy: float
    val_accuracy: float | None = None


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, max_iter: int = 200
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression, returned as a unit normal in ``x``'s coordinates.

    Args:
        x: ``[N, D]`` features.
        y: ``[N]`` labels in {0, 1}.
        l2: weight of ``½‖w‖²`` on centred features divided by their RMS standard deviation
            (scale-free regularisation; one scalar for all features keeps W's geometry).
        max_iter: L-BFGS iterations.

    Returns:
        ``(normal [D] float32 unit-norm, offset)`` with ``⟨normal, x⟩ + offset > 0`` ⇒ label 1.
    """
    xd, yd = x.double(), y.double()
    # Centre, and scale by one scalar (not per feature): the geometry, hence the max-margin
    # direction of separable data, stays that of W (InterFaceGAN's SVM runs on raw codes).
    mu = xd.mean(0)
    sd = xd.var(0).mean().sqrt().clamp_min(1e-8)
    xs = (xd - mu) / sd
    w = torch.zeros(xs.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xs @ w + b, yd) + 0.5 * l2 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_orig = w.detach() / sd
    b_orig = float(b.detach()) - float((w.detach() * mu / sd).sum())
    norm = float(w_orig.norm())
    if norm == 0 or not np.isfinite(norm):
        raise ValueError("logistic regression found no direction (constant labels or features?)")
    return (w_orig / norm).float().numpy(), b_orig / norm


def _accuracy(x: torch.Tensor, y: torch.Tensor, normal: np.ndarray, offset: float) -> float:
    pred = (x.double() @ torch.from_numpy(normal).double() + offset) > 0
    return float((pred == y.bool()).double().mean())


def fit_boundary(
    codes: torch.Tensor,
    scores: torch.Tensor,
    ratio: float = 0.1,
    split: float = 0.7,
    l2: float = 1e-2,
    seed: int = 0,
) -> list[LinearFit]:
    """Per-layer boundaries from codes ``[N, L, D]`` and attribute scores ``[N]``.

    The ``ratio·N`` top- and bottom-scored samples are labelled 1 / 0, shuffled (seeded) and
    split ``split`` / ``1 − split``; one logistic regression per layer.

    Returns:
        ``L`` :class:`LinearFit` (normals ``[D]`` unit-norm, towards high scores).
    """
    pos, neg = select_extremes(scores, ratio)
    idx = torch.cat([pos, neg])
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))
    idx, labels = idx[perm], labels[perm]
    n_fit = min(max(int(round(len(idx) * split)), 2), len(idx))
    fits = []
    for layer in range(codes.shape[1]):
        x = codes[idx, layer]
        normal, offset = fit_logistic(x[:n_fit], labels[:n_fit], l2)
        val = _accuracy(x[n_fit:], labels[n_fit:], normal, offset) if n_fit < len(idx) else None
        fits.append(
            LinearFit(normal, offset, _accuracy(x[:n_fit], labels[:n_fit], normal, offset), val)
        )
    return fits


def centroid_gap(codes: torch.Tensor, labels: torch.Tensor, direction: np.ndarray) -> np.ndarray:
    """Per layer, ``mean⟨w_l, n_l⟩`` over label-1 minus over label-0 samples → ``[L]``.

    Args:
        codes: ``[N, L, D]``; labels: ``[N]`` bool/0-1; direction: ``[L, D]``.
    """
    proj = torch.einsum("nld,ld->nl", codes.double(), torch.from_numpy(direction).double())
    mask = labels.bool()
    if mask.all() or (~mask).all():
        return np.zeros(codes.shape[1])
    return (proj[mask].mean(0) - proj[~mask].mean(0)).numpy()


# ---------------------------------------------------------------------------------------------
# Default layers


def layer_candidates(num_layers: int) -> list[list[int]]:
    """Contiguous ranges of whole resolution blocks: layers ``2a .. 2b+1`` for ``a <= b``
    (single layers if ``num_layers`` is odd), ordered by size then start."""
    unit = 2 if num_layers % 2 == 0 else 1
    blocks = num_layers // unit
    ranges = [
        list(range(a * unit, (b + 1) * unit)) for a in range(blocks) for b in range(a, blocks)
    ]
    return sorted(ranges, key=lambda r: (len(r), r[0]))


def edit_codes(
    codes: torch.Tensor, direction: np.ndarray, layers: list[int], distances: torch.Tensor
) -> torch.Tensor:
    """``codes [N, L, D]`` moved by ``distances [N]`` along ``direction [L, D]`` on ``layers``."""
    out = codes.clone()
    d = torch.from_numpy(direction).to(codes)
    out[:, layers] += distances.view(-1, 1, 1).to(codes) * d[layers]
    return out


def push_across(
    codes: torch.Tensor,
    before: torch.Tensor,
    attr: int,
    direction: np.ndarray,
    layers: list[int],
    distance: float,
) -> torch.Tensor:
    """``codes [N, L, D]`` moved by ``distance`` along ``direction`` on ``layers``, each towards
    the side of attribute ``attr`` it is not on (``before [N, A]`` bool predictions)."""
    side = torch.where(before[:, attr], -1.0, 1.0)
    return edit_codes(codes, direction, layers, side * distance)


def edit_effect(before: torch.Tensor, after: torch.Tensor, attr: int) -> tuple[float, float]:
    """``(success, preserved)`` of an edit that pushes attribute ``attr`` to the other side.

    Args:
        before: reference predictions ``[N, A]`` (bool); the target of sample n is
            ``not before[n, attr]``.
        after: predictions on the edited images ``[N, A]`` (bool).

    Returns:
        success = mean over n of ``after[n, attr] != before[n, attr]``; preserved = mean over n
        and the other attributes of ``after == before`` (1.0 when there is no other attribute).
    """
    success = float((after[:, attr] != before[:, attr]).float().mean())
    others = [j for j in range(before.shape[1]) if j != attr]
    preserved = float((after[:, others] == before[:, others]).float().mean()) if others else 1.0
    return success, preserved


def choose_layers(
    G: Generator,
    classifier: AttributeClassifier,
    codes: torch.Tensor,
    logits: torch.Tensor,
    attr: int,
    direction: np.ndarray,
    distances: Callable[[list[int]], list[float]],
    batch_size: int = 64,
) -> tuple[list[int], float, list[dict[str, Any]]]:
    """Pick the default layers and edit distance of a boundary by measuring edits.

    Args:
        codes: held-out codes ``[M, L, D]``; logits: their classifier logits ``[M, A]``.
        attr: attribute index; direction: ``[L, D]`` unit rows.
        distances: candidate edit distances (> 0) for a layer range.

    Returns:
        ``(layers, distance, table)``; ``table`` rows: ``layers``, ``distance``, ``success``,
        ``preserved``, ``score`` (see the module docstring for the rule).
    """
    before = logits > 0
    table = []
    for layers in layer_candidates(codes.shape[1]):
        for distance in distances(layers):
            edited = push_across(codes, before, attr, direction, layers, distance)
            after = classify_codes(G, classifier, edited, batch_size) > 0
            success, preserved = edit_effect(before, after, attr)
            table.append(
                {
                    "layers": layers,
                    "distance": round(float(distance), 4),
                    "success": round(success, 4),
                    "preserved": round(preserved, 4),
                    "score": round(success * preserved, 4),
                }
            )
    best = max(row["score"] for row in table)
    near = [row for row in table if row["score"] >= best - 0.01]
    chosen = min(near, key=lambda row: (len(row["layers"]), row["distance"], row["layers"][0]))
    return chosen["layers"], float(chosen["distance"]), table


# ---------------------------------------------------------------------------------------------
# Whole attributes and the model directory


def train_attribute_boundary(
    G: Generator,
    classifier: AttributeClassifier,
    codes: torch.Tensor,
    logits: torch.Tensor,
    select_codes: torch.Tensor,
    select_logits: torch.Tensor,
    attribute: str,
    cfg: BoundaryTrainConfig,
    layers: list[int] | None = None,
    colours: tuple[RegionMaps, torch.Tensor] | None = None,
) -> tuple[Boundary, dict[str, Any]]:
    """Fit, choose layers and distance for one attribute → ``(Boundary, report entry)``.

    ``colours``: region maps and colour Jacobian ``[L, K, D]``; when given, the normal is
    decorrelated from the region colours before the layer choice.
    """
    a = list(classifier.config.attributes).index(attribute)
    fits = fit_boundary(codes, logits[:, a], cfg.ratio, cfg.split, cfg.l2, cfg.seed)
    raw = np.stack([f.normal for f in fits]).astype(np.float32)  # [L, D]
    direction = raw if colours is None else remove_colour_components(raw, colours[1])
    gaps = centroid_gap(codes, logits[:, a] > 0, direction)
    rule = "centroid_gap"
    if not np.mean(gaps) > 1e-6:  # one class only (or a useless fit): fall back to the spread
        proj = torch.einsum("nld,ld->nl", codes.double(), torch.from_numpy(direction).double())
        gaps, rule = 2.0 * proj.std(0).numpy(), "2_std (no class separation in the samples)"
    if cfg.distance is not None:
        rule = "fixed"
    else:
        rule = f"best success x preserved over {list(cfg.distance_scales)} x {rule}"

    def candidates(rows: list[int]) -> list[float]:
        if cfg.distance is not None:
            return [cfg.distance]
        return [scale * float(np.mean(gaps[rows])) for scale in cfg.distance_scales]

    table: list[dict[str, Any]] = []
    if layers is None:
        layers, distance, table = choose_layers(
            G, classifier, select_codes, select_logits, a, direction, candidates, cfg.batch_size
        )
    else:
        distance = candidates(layers)[0]
    positives = int((logits[:, a] > 0).sum())
    source = (
        f"idinvert train boundary: per-layer logistic regression on {codes.shape[0]} W+ "
        f"samples (psi=1), top/bottom {cfg.ratio:g} by classifier logit"
        + ("; background/shirt colour directions projected out" if colours is not None else "")
    )
    boundary = Boundary(attribute, direction, sorted(layers), source)
    entry = {
        "layers": sorted(layers),
        "distance": round(distance, 4),
        "distance_rule": rule,
        "centroid_gap_per_layer": [round(float(g), 4) for g in gaps],
        "train_accuracy_per_layer": [round(f.train_accuracy, 4) for f in fits],
        "val_accuracy_per_layer": [
            None if f.val_accuracy is None else round(f.val_accuracy, 4) for f in fits
        ],
        "positive_fraction": round(positives / max(codes.shape[0], 1), 4),
        "layer_selection": table,
    }
    if colours is not None:
        chosen = sorted(layers)
        entry["colour_decorrelation"] = {
            name: measure_edit(
                G,
                classifier,
                select_codes,
                select_logits,
                a,
                d,
                chosen,
                distance,
                colours[0],
                cfg.batch_size,
            )
            for name, d in (("raw", raw), ("decorrelated", direction))
        }
        entry["cosine_raw_decorrelated_per_layer"] = [
            round(float(np.dot(r, d)), 4) for r, d in zip(raw, direction, strict=True)
        ]
    return boundary, entry


@torch.no_grad()
def measure_edit(
    G: Generator,
    classifier: AttributeClassifier,
    codes: torch.Tensor,
    logits: torch.Tensor,
    attr: int,
    direction: np.ndarray,
    layers: list[int],
    distance: float,
    maps: RegionMaps,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Success, preservation and region colour shift of pushing ``codes [M, L, D]`` across
    attribute ``attr`` by ``distance`` along ``direction [L, D]`` on ``layers``.

    Returns:
        ``{"success", "preserved", "colour_shift": {region: {"mean_abs", "systematic"}}}``
        (shifts in 8-bit levels, :func:`~idinvert.training.entanglement.colour_shift`).
    """
    before = logits > 0
    edited = push_across(codes, before, attr, direction, layers, distance)
    device = next(G.parameters()).device
    after_logits, shifts = [], []
    for orig, new in zip(codes.split(batch_size), edited.split(batch_size), strict=True):
        img_before = G.synthesis(orig.to(device)).clamp(-1, 1).float().cpu()
        img_after = G.synthesis(new.to(device)).clamp(-1, 1).float().cpu()
        after_logits.append(predict_logits(classifier, img_after, batch_size))
        shifts.append((img_before, img_after))
    success, preserved = edit_effect(before, torch.cat(after_logits) > 0, attr)
    shift = colour_shift(torch.cat([b for b, _ in shifts]), torch.cat([x for _, x in shifts]), maps)
    return {"success": round(success, 4), "preserved": round(preserved, 4), "colour_shift": shift}


def write_boundary(boundary: Boundary, model_dir: str | Path) -> Path:
    """Save ``boundaries/<name>.safetensors`` atomically inside ``model_dir``."""
    folder = Path(model_dir) / BOUNDARY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{boundary.name}.safetensors"
    tmp = folder / f".{boundary.name}.tmp"
    save_boundary(boundary, tmp)
    tmp.replace(path)
    path.chmod(0o644)
    return path


def read_report(model_dir: str | Path) -> dict[str, Any]:
    """``boundary_report.json`` of a model directory (empty skeleton if absent)."""
    path = Path(model_dir) / REPORT_FILE
    if path.is_file():
        report = json.loads(path.read_text())
        if report.get("format") == REPORT_FORMAT:
            return report
    return {"format": REPORT_FORMAT, "version": 1, "attributes": {}}


def train_boundaries(
    G: Generator,
    classifier: AttributeClassifier,
    model_dir: str | Path,
    attributes: list[str],
    cfg: BoundaryTrainConfig,
    layers: list[int] | None = None,
    progress: bool = False,
    data: str = DEFAULT_DATA,
) -> dict[str, Any]:
    """Fit boundaries for ``attributes`` and write them (plus the report) into ``model_dir``.

    Args:
        G: the model's generator (eval mode).
        classifier: attribute classifier (eval mode).
        model_dir: the model directory to update.
        attributes: names among the classifier's attributes.
        cfg: fitting settings.
        layers: force these default layers (one attribute only) instead of measuring.
        progress: tqdm bars.
        data: the renderer the classifier was trained on (colour decorrelation needs the faces
            renderer's regions; other renderers skip it and the report says so).

    Returns:
        The updated report dict.
    """
    from tqdm.auto import tqdm

    known = list(classifier.config.attributes)
    unknown = [a for a in attributes if a not in known]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; the classifier knows {known}")
    start = time.perf_counter()
    total = cfg.num_samples + cfg.select_samples
    codes = sample_codes(G, total, cfg.seed)
    with tqdm(total=total, desc="scoring samples", unit="img", disable=not progress) as bar:
        logits = classify_codes(G, classifier, codes, cfg.batch_size, bar.update)
    fit_codes, sel_codes = codes[: cfg.num_samples], codes[cfg.num_samples :]
    fit_logits, sel_logits = logits[: cfg.num_samples], logits[cfg.num_samples :]
    report = read_report(model_dir)
    report["config"] = cfg.to_dict()
    report["sample_positive_fraction"] = {
        a: round(float((fit_logits[:, i] > 0).float().mean()), 4) for i, a in enumerate(known)
    }
    colours = None
    if cfg.decorrelate_colours:
        try:
            maps = region_maps(G.config.resolution, data)
            why = f"{data} has no region model"
        except ValueError as exc:
            maps, why = None, str(exc)
        if maps is None:
            report["colour_regions"] = f"not decorrelated: {why}"
        else:
            jac = colour_jacobian(G, fit_codes[: cfg.jacobian_samples], maps, cfg.batch_size)
            colours = (maps, jac)
            report["colour_regions"] = {
                "fraction_of_image": maps.fractions(),
                "rule": "pixels showing the region (visibility >= 0.5) in >= 90% of 256 "
                "validation renders; shift = |mean region colour after - before|, 8-bit levels",
            }
    for attribute in tqdm(attributes, desc="boundaries", unit="attr", disable=not progress):
        boundary, entry = train_attribute_boundary(
            G,
            classifier,
            fit_codes,
            fit_logits,
            sel_codes,
            sel_logits,
            attribute,
            cfg,
            layers,
            colours,
        )
        write_boundary(boundary, model_dir)
        report["attributes"][attribute] = entry
    report["seconds"] = round(time.perf_counter() - start, 1)
    path = Path(model_dir) / REPORT_FILE
    path.write_text(json.dumps(report, indent=1) + "\n")
    path.chmod(0o644)
    return report


def ensure_classifier(
    model_dir: str | Path,
    resolution: int,
    train_cfg: ClassifierTrainConfig,
    data: str = DEFAULT_DATA,
    data_seed: int = 0,
    workers: int = 0,
    retrain: bool = False,
    progress: bool = False,
) -> tuple[AttributeClassifier, dict[str, Any]]:
    """The model directory's classifier; trains and saves one first if there is none (or
    ``retrain``).

    Training data: faces ``0 .. num_train-1`` of training stream ``data_seed``; held-out
    accuracy on faces ``0 .. num_val-1`` of its validation split (``validation_seed``).

    Returns:
        ``(classifier in eval mode, classifier.json dict)``.
    """
    model_dir = Path(model_dir)
    if not retrain and (model_dir / CLASSIFIER_JSON).is_file():
        return load_classifier(model_dir)
    check_train_seed(data_seed)
    t0 = time.perf_counter()
    images, labels, names = render_faces(
        data, data_seed, 0, train_cfg.num_train, resolution, workers
    )
    v_images, v_labels, _ = render_faces(
        data, validation_seed(data_seed), 0, train_cfg.num_val, resolution, workers
    )
    render_sec = time.perf_counter() - t0
    net, metrics = train_classifier(
        to_float_images(images),
        torch.from_numpy(labels),
        names,
        train_cfg,
        to_float_images(v_images),
        torch.from_numpy(v_labels),
        progress,
    )
    info = {
        "metrics": metrics,
        "data": {
            "renderer": data,
            "train": {"data_seed": data_seed, "faces": [0, train_cfg.num_train]},
            "validation": {
                "data_seed": validation_seed(data_seed),
                "faces": [0, train_cfg.num_val],
            },
            "render_seconds": round(render_sec, 1),
        },
        "training": asdict(train_cfg),
    }
    save_classifier(net, model_dir, info)
    return load_classifier(model_dir)
