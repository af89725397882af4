"""Per-sample loss terms of the in-domain inversion objective.

Every function returns one value per sample (shape ``[N]``) so that a batch of N images can be
optimised together while each sample sees exactly the objective of a batch-1 run: the total
loss is the *sum* over samples, and Adam is elementwise.
"""

from __future__ import annotations

import torch


def pixel_loss(
    target: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over all C·H·W elements (masked-out pixels count as zeros).

    Args:
        target: ``[N, 3, R, R]`` in [−1, 1].
        recon: ``[N, 3, R, R]`` in [−1, 1].
        mask: optional ``[1 or N, 1 or 3, R, R]`` in {0, 1}.

    Returns:
        ``[N]``.
    """
    diff = target - recon
    if mask is not None:
        diff = diff * mask
    return diff.square().flatten(1).mean(dim=1)


def feature_loss(target_features: torch.Tensor, recon_features: torch.Tensor) -> torch.Tensor:
    """Mean squared error between perceptual features ``[N, 512, h, w]`` → ``[N]``."""
    return (target_features - recon_features).square().flatten(1).mean(dim=1)


def domain_loss(codes: torch.Tensor, reencoded: torch.Tensor) -> torch.Tensor:
    """Encoder consistency ``mean_{L,D} (z − E(G(z)))²`` for codes ``[N, L, D]`` → ``[N]``."""
    return (codes - reencoded).square().flatten(1).mean(dim=1)
