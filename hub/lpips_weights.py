"""The LPIPS metric (v0.1, VGG variant) with a real ImageNet VGG16 backbone, built cheaply.

The metric is the ``lpips`` package's (Zhang et al. 2018): its calibrated linear heads
(``lpips/weights/v0.1/vgg.pth``, read with ``weights_only=True``) on torchvision's VGG16
features relu1_2 … relu5_3. The network is restated here (:class:`LpipsVgg`, checked against
``lpips.LPIPS`` in ``tests/test_lpips_metric.py``) so that building it costs neither the import
of torchvision's model zoo (≈ 1.8 s) nor a random VGG16 initialisation that the weights then
overwrite (≈ 1.4 s): it is built on the ``meta`` device and the weights are assigned.
The backbone comes from :func:`idinvert.hub.vgg_weights.find_vgg16` (see there for the
resolution order). When no real backbone is available :func:`load_lpips` returns ``None``: a
random backbone is never passed off as LPIPS.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from torch import nn

from idinvert.core.models import assign_state, build_without_init
from idinvert.core.models.packed_conv import frozen_conv2d
from idinvert.hub.vgg_weights import VGG16_CONVS, VggWeights, find_vgg16, unavailable_message

logger = logging.getLogger(__name__)

#: torchvision ``vgg16().features`` indices after which lpips taps relu1_2 … relu5_3.
_TAPS = (3, 8, 15, 22, 29)
_TAP_CHANNELS = (64, 128, 256, 512, 512)
#: lpips' ``ScalingLayer`` constants (inputs in [-1, 1] → ImageNet-normalised).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_LPIPS_HEADS = Path("weights") / "v0.1" / "vgg.pth"


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` layout, from :data:`VGG16_CONVS`: conv3×3 + ReLU
    at each listed index, a 2×2 max-pool in every gap between them."""
    layers: list[nn.Module] = []
    for idx, cin, cout in VGG16_CONVS:
        while len(layers) < idx:
            layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class LpipsVgg(nn.Module):
    """LPIPS v0.1 (VGG, ``lpips=True``, spatially averaged) as one module.

    ``forward(a, b)``: two ``[N, 3, H, W]`` RGB batches in [-1, 1] → distances ``[N, 1, 1, 1]``
    (the same value and shape as ``lpips.LPIPS(net="vgg")(a, b)``). Keys: ``features.N.*``
    (torchvision's VGG16) and ``lins.K.weight`` ``[1, C_K, 1, 1]`` (lpips' heads).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _TAP_CHANNELS)
        cpu = torch.device("cpu")  # constants, also when built on "meta"
        self.register_buffer(
            "shift", torch.tensor(_SHIFT, device=cpu).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "scale", torch.tensor(_SCALE, device=cpu).view(1, 3, 1, 1), persistent=False
        )

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        h = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features[: _TAPS[-1] + 1]):
            if isinstance(layer, nn.Conv2d):  # kernels reordered once in a channels-last model
                h = frozen_conv2d(self, f"features.{i}", h, layer.weight, layer.bias, layer.padding)
            else:
                h = layer(h)
            if i in _TAPS:
                taps.append(h)
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distances(b, [a])[0]

    def distances(
        self, reference: torch.Tensor, candidates: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """LPIPS of each ``[N, 3, H, W]`` candidate batch to ``reference`` (same shape), the
        reference's features computed once → one ``[N, 1, 1, 1]`` tensor per candidate."""
        n = reference.shape[0]
        totals = [reference.new_zeros(n, 1, 1, 1) for _ in candidates]
        taps = self._taps(torch.cat([reference, *candidates]))
        for lin, feat in zip(self.lins, taps, strict=True):
            feat = feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            ref = feat[:n]
            for k in range(len(candidates)):
                diff = feat[(k + 1) * n : (k + 2) * n] - ref
                totals[k] = totals[k] + lin(diff.square()).mean(dim=(2, 3), keepdim=True)
        return totals


def lpips_heads_file() -> Path | None:
    """The ``lpips`` package's calibrated VGG heads, found without importing the package
    (which imports torchvision); ``None`` when ``lpips`` is not installed."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _LPIPS_HEADS
    return path if path.is_file() else None


def read_lpips_heads(path: str | Path) -> dict[str, torch.Tensor]:
    """lpips' ``vgg.pth`` (``lin{K}.model.1.weight``) → ``lins.{K}.weight``, read safely."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return {f"lins.{k}.weight": raw[f"lin{k}.model.1.weight"] for k in range(len(_TAPS))}


class LpipsMetric:
    """``metric(img_a, img_b)`` → LPIPS distance per image ``[N]`` (no gradients).

    Inputs are ``[N, 3, H, W]`` RGB in [-1, 1] (``H, W >= 16``); they are moved to the model's
    device. The underlying ``lpips.LPIPS`` module is :attr:`model` (use it directly as a loss).

    Attributes:
        model: the ``lpips.LPIPS`` module (eval mode, frozen).
        source: provenance of the VGG16 backbone.
    """

    def __init__(self, model: torch.nn.Module, source: str, chunk: int = 8) -> None:
        self.model = model
        self.source = source
        self.chunk = chunk

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, img_a: torch.Tensor, img_b: torch.Tensor) -> torch.Tensor:
        return self.against(img_b, img_a)[0]

    def against(self, reference: torch.Tensor, *candidates: torch.Tensor) -> list[torch.Tensor]:
        """LPIPS of each candidate batch to ``reference`` (all ``[N, 3, H, W]`` in [-1, 1]), the
        reference's features computed once → one ``[N]`` tensor per candidate."""
        for img in candidates:
            if img.shape != reference.shape or img.ndim != 4 or img.shape[1] != 3:
                raise ValueError(
                    f"LPIPS needs [N, 3, H, W] batches of equal shape, got {list(img.shape)} "
                    f"and {list(reference.shape)}"
                )
        outs: list[list[torch.Tensor]] = [[] for _ in candidates]
        with torch.no_grad():
            for lo in range(0, reference.shape[0], self.chunk):
                ref = reference[lo : lo + self.chunk].to(self.device).float()
                chunk = [c[lo : lo + self.chunk].to(self.device).float() for c in candidates]
                for out, d in zip(outs, self.model.distances(ref, chunk), strict=True):
                    out.append(d.flatten().cpu())
        return [torch.cat(out) for out in outs]

    def __repr__(self) -> str:
        return f"LpipsMetric(vgg, backbone={self.source!r}, device={self.device})"


def build_lpips(
    weights: VggWeights, device: str | torch.device = "cpu", heads: str | Path | None = None
) -> LpipsMetric:
    """An :class:`LpipsMetric` with the given backbone weights and lpips' heads (``heads``:
    their file, default the installed ``lpips`` package's)."""
    heads = heads or lpips_heads_file()
    if heads is None:
        raise FileNotFoundError("the 'lpips' package (its calibrated VGG heads) is not installed")
    model = build_without_init(LpipsVgg)
    assign_state(model, {**weights.state, **read_lpips_heads(heads)})
    model.eval().requires_grad_(False)
    # channels-last: oneDNN's convolutions then neither reorder activations nor (see
    # frozen_conv2d) kernels on each call; 256 px, 2-core Zen 4: ≈ 1.5× faster, same distances
    return LpipsMetric(model.to(device, memory_format=torch.channels_last), weights.source)


def load_lpips(device: str | torch.device = "cpu") -> LpipsMetric | None:
    """LPIPS (VGG) with a real ImageNet backbone, or ``None`` when none is available.

    Never raises for missing weights: the reason is logged (INFO; WARNING for a broken
    explicit setting) and ``None`` is returned.
    """
    weights = find_vgg16(strict=False)
    if weights is None:
        logger.info("LPIPS unavailable: %s", unavailable_message())
        return None
    if lpips_heads_file() is None:
        logger.info("LPIPS unavailable: the 'lpips' package is not installed")
        return None
    return build_lpips(weights, device)
