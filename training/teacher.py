"""The renderer as a teacher: z drives the face renderer, so G(z) has a target image.

:func:`idinvert.training.faces.sample_params` draws every random parameter of a face from a
numpy generator, one scalar call after another. :class:`LatentRng` answers those calls from a
latent vector instead: call ``k`` reads ``z[k]`` (N(0, 1)) and maps it through the normal CDF
Φ where a uniform is asked for, so

* ``standard_normal()`` → ``z[k]``; ``normal(μ, σ)`` → ``μ + σ·z[k]``;
* ``uniform(a, b)`` → ``a + (b − a)·Φ(z[k])``; ``random()`` → ``Φ(z[k])``;
* ``integers(n)`` → ``⌊n·Φ(z[k])⌋`` (clamped to ``n − 1``).

Each parameter therefore has its renderer distribution when ``z ~ N(0, I)``, and
``render(params(z))`` is a deterministic, mostly smooth function of ``z`` (the eight attribute
latents are ``z[0..7]`` directly). Coordinates after the last draw (``z[DRAWS:]``) are unused.
Pixel noise and the background texture come from ``texture_seed`` (an ``integers`` call), i.e.
they are not smooth in ``z``; the reconstruction loss averages them out, the adversarial loss
puts texture back.

A generator trained with ``GanTrainConfig.teacher_weight > 0`` gets, besides the usual
non-saturating GAN loss, ``teacher_weight · (L1(G(z), x(z)) + teacher_perceptual ·
P(G(z), x(z)))`` on the unmixed samples of each batch, with ``x(z)`` the render of ``z`` and
``P`` a shallow VGG16 feature distance (:class:`ShallowVgg`). The distribution of ``G(z)``,
``z ~ N(0, I)``, is then pulled towards the render distribution directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from idinvert.training import faces

#: Latent coordinates consumed by one face (checked by :func:`params_from_latent`).
DRAWS = 64


class LatentRng:
    """Duck-typed ``numpy.random.Generator`` whose scalar draws come from a latent vector.

    Args:
        z: ``[z_dim]`` latent (float, ~N(0, 1)); draw ``k`` reads ``z[k]``.
    """

    def __init__(self, z: np.ndarray) -> None:
        self.z = np.asarray(z, dtype=np.float64).reshape(-1)
        self.used = 0

    def _next(self) -> float:
        if self.used >= len(self.z):
            raise ValueError(f"the renderer needs more than {len(self.z)} latent coordinates")
        v = float(self.z[self.used])
        self.used += 1
        return v

    def _uniform01(self) -> float:
        return 0.5 * (1.0 + math.erf(self._next() / math.sqrt(2.0)))

    def standard_normal(self) -> float:
        """``z[k]``."""
        return self._next()

    def normal(self, loc: float = 0.0, scale: float = 1.0) -> float:
        """``loc + scale · z[k]``."""
        return loc + scale * self._next()

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """``low + (high − low) · Φ(z[k])``."""
        return low + (high - low) * self._uniform01()

    def random(self) -> float:
        """``Φ(z[k])``."""
        return self._uniform01()

    def integers(self, low: int, high: int | None = None) -> int:
        """``low + ⌊(high − low) · Φ(z[k])⌋`` (``integers(n)`` = ``0..n−1``)."""
        if high is None:
            low, high = 0, low
        n = int(high) - int(low)
        return int(low) + min(int(n * self._uniform01()), n - 1)


def params_from_latent(z: np.ndarray) -> faces.FaceParams:
    """The face whose random draws are ``z [z_dim]`` (``z_dim ≥`` :data:`DRAWS`)."""
    return faces.sample_params(LatentRng(z))  # type: ignore[arg-type]


def render_latents(z: np.ndarray, resolution: int = 64) -> np.ndarray:
    """Renders of latents ``z [B, z_dim]`` → uint8 ``[B, R, R, 3]``."""
    return np.stack([faces.render_face_array(params_from_latent(v), resolution) for v in z])


def step_latents(seed: int, step: int, batch: int, z_dim: int, rank: int = 0) -> np.ndarray:
    """Latents of training step ``step`` (rank ``rank``): float32 ``[batch, z_dim]``, N(0, 1),
    a pure function of ``(seed, step, rank)`` (so a resumed run sees the same stream)."""
    rng = np.random.default_rng([int(seed), 0x7EAC, int(step), int(rank)])
    return rng.standard_normal((batch, z_dim)).astype(np.float32)


class TeacherBatches(IterableDataset):
    """``(z float32 [B, z_dim], renders uint8 [B, R, R, 3])`` for steps ``first_step, …``.

    Workers take every ``num_workers``-th step; the loader's round-robin keeps the order.
    """

    def __init__(
        self,
        seed: int,
        resolution: int,
        per_rank_batch: int,
        z_dim: int,
        first_step: int,
        rank: int = 0,
        num_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.seed, self.resolution, self.batch, self.z_dim = seed, resolution, per_rank_batch, z_dim
        self.first_step, self.rank, self.num_steps = first_step, rank, num_steps

    def item(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``first_step + k``'s latents and renders."""
        z = step_latents(self.seed, self.first_step + k, self.batch, self.z_dim, self.rank)
        return torch.from_numpy(z), torch.from_numpy(render_latents(z, self.resolution))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        k = worker
        while self.num_steps is None or k < self.num_steps:
            yield self.item(k)
            k += num_workers


class ShallowVgg(torch.nn.Module):
    """LPIPS-like distance on torchvision VGG16 ``relu1_2`` and ``relu2_2`` features.

    Features are unit-normalised over channels, squared differences averaged over positions and
    channels and summed over the two layers: ``[B, 3, R, R]`` pairs in [−1, 1] → ``[B]``.
    """

    LAST = 8  # features[:9] = conv1_1, relu, conv1_2, relu, pool, conv2_1, relu, conv2_2, relu
    TAPS = (3, 8)

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        from idinvert.training.gan_metrics import vgg16_features, vgg16_state

        feats = vgg16_features(self.LAST)
        feats.load_state_dict(vgg16_state(state, self.LAST))
        self.features = feats.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                out.append(x / (x.norm(dim=1, keepdim=True) + 1e-8))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance ``[B]`` of ``a``, ``b`` ``[B, 3, R, R]`` in [−1, 1]."""
        fb = [f.detach() for f in self._taps(b)]
        return sum(
            (fa - fb_).square().sum(1).mean(dim=(1, 2))
            for fa, fb_ in zip(self._taps(a), fb, strict=True)
        )


def load_shallow_vgg() -> ShallowVgg | None:
    """:class:`ShallowVgg` with the offline-resolved torchvision VGG16, or ``None``."""
    from idinvert.hub.vgg_weights import find_vgg16

    weights = find_vgg16(strict=False)
    return None if weights is None else ShallowVgg(weights.state)


def reconstruction_loss(
    fakes: torch.Tensor,
    targets: torch.Tensor,
    perceptual: ShallowVgg | None,
    perceptual_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L1 + perceptual_weight · ShallowVgg`` of ``fakes`` vs ``targets`` (``[B, 3, R, R]``,
    [−1, 1]), averaged over the batch → ``(loss, {"rec_l1", "rec_vgg"})``."""
    l1 = (fakes.float() - targets).abs().mean()
    stats = {"rec_l1": l1.item()}
    loss = l1
    if perceptual is not None and perceptual_weight > 0:
        p = perceptual(fakes.float(), targets).mean()
        loss = loss + perceptual_weight * p
        stats["rec_vgg"] = p.item()
    return loss, stats


def uint8_to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` → float ``[B, 3, H, W]`` in [−1, 1]."""
    return batch.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)
