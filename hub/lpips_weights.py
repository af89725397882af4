"""The LPIPS metric (``lpips`` package, VGG variant) with a real ImageNet VGG16 backbone.

``lpips.LPIPS(net="vgg")`` normally downloads torchvision's VGG16; here the model is built with
``pnet_rand=True`` (no download; its own calibrated linear heads ship with ``lpips``) and the
backbone is then loaded from :func:`idinvert.hub.vgg_weights.find_vgg16` (see there for the
resolution order). When no real backbone is available :func:`load_lpips` returns ``None``: a
random backbone is never passed off as LPIPS.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from idinvert.hub.vgg_weights import VggWeights, find_vgg16, unavailable_message

logger = logging.getLogger(__name__)

#: lpips' ``net.slice{k}`` holds torchvision ``features[a:b]`` with these bounds.
_SLICES = ((1, 0, 4), (2, 4, 9), (3, 9, 16), (4, 16, 23), (5, 23, 30))


class LpipsMetric:
    """``metric(img_a, img_b)`` → LPIPS distance per image ``[N]`` (no gradients).

    Inputs are ``[N, 3, H, W]`` RGB in [-1, 1] (``H, W >= 16``); they are moved to the model's
    device. The underlying ``lpips.LPIPS`` module is :attr:`model` (use it directly as a loss).

    Attributes:
        model: the ``lpips.LPIPS`` module (eval mode, frozen).
        source: provenance of the VGG16 backbone.
    """

    def __init__(self, model: torch.nn.Module, source: str) -> None:
        self.model = model
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, img_a: torch.Tensor, img_b: torch.Tensor) -> torch.Tensor:
        if img_a.shape != img_b.shape or img_a.ndim != 4 or img_a.shape[1] != 3:
            raise ValueError(
                f"LPIPS needs two [N, 3, H, W] batches of equal shape, got {list(img_a.shape)} "
                f"and {list(img_b.shape)}"
            )
        with torch.no_grad():
            d = self.model(img_a.to(self.device).float(), img_b.to(self.device).float())
        return d.flatten()

    def __repr__(self) -> str:
        return f"LpipsMetric(vgg, backbone={self.source!r}, device={self.device})"


def lpips_backbone_state(weights: VggWeights) -> dict[str, torch.Tensor]:
    """torchvision ``features.N.*`` → lpips ``slice{k}.N.*`` (the state dict of ``LPIPS.net``)."""
    out = {}
    for key, value in weights.state.items():
        idx = int(key.split(".")[1])
        k = next(k for k, lo, hi in _SLICES if lo <= idx < hi)
        out[f"slice{k}.{key.split('.', 1)[1]}"] = value
    return out


def build_lpips(weights: VggWeights, device: str | torch.device = "cpu") -> LpipsMetric:
    """An :class:`LpipsMetric` with the given backbone weights."""
    import lpips

    with warnings.catch_warnings():  # torchvision's 'pretrained' deprecation noise
        warnings.simplefilter("ignore")
        model: Any = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    model.net.load_state_dict(lpips_backbone_state(weights), strict=True)
    model.eval().requires_grad_(False)
    return LpipsMetric(model.to(device), weights.source)


def load_lpips(device: str | torch.device = "cpu") -> LpipsMetric | None:
    """LPIPS (VGG) with a real ImageNet backbone, or ``None`` when none is available.

    Never raises for missing weights: the reason is logged (INFO; WARNING for a broken
    explicit setting) and ``None`` is returned.
    """
    weights = find_vgg16(strict=False)
    if weights is None:
        logger.info("LPIPS unavailable: %s", unavailable_message())
        return None
    try:
        import lpips  # noqa: F401 - a runtime dependency; checked for a clear message
    except ImportError:
        logger.info("LPIPS unavailable: the 'lpips' package is not installed")
        return None
    return build_lpips(weights, device)
