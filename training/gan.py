"""StyleGAN training on CPU for idinvert's own generator (library code, no ``__main__``).

The trained network is :class:`idinvert.core.models.generator.Generator` unchanged (per-layer W+
mapping, AdaIN synthesis, tanh output); the discriminator is
:class:`idinvert.training.discriminator.Discriminator`.

Recipe (StyleGAN / StyleGAN2-ADA defaults, scaled down):

* non-saturating logistic loss; lazy R1 on reals every ``r1_interval`` steps as a separate
  optimizer step on the same Adam (lr and betas adjusted by ``c = k / (k + 1)``);
* Adam lr 0.002, β = (0, 0.99), ε = 1e-8 for G and D; mapping layers train at ``lr × 0.01``
  through the generator's ``mapping_lr_mul`` (weights stored ×100, see
  :func:`init_generator_weights`);
* style mixing: with probability ``style_mixing_prob`` a sample takes layers ``≥ cutoff`` (cutoff
  uniform in 1..L−1) from the mapping output of a second z;
* per-pixel noise is random during training (``randomize_noise=True``);
* generator EMA with a half-life of ``ema_kimg`` thousand images, ramped up over the first
  images (``ema_rampup``), copied buffers;
* ``truncation.w_avg``: EMA (β = ``w_avg_beta`` per step) of the batch mean of the mapping
  output. Our truncation buffer is a single ``[D]`` vector broadcast to all L layers while the
  mapping predicts a different code per layer, so the mean is taken over samples **and
  layers** (official TF StyleGAN tracked layer 0 only);
* one generator forward per step: the same fakes feed the D step (detached) and then the G step
  (through the updated D, whose weights are frozen for that pass).

Data: an endless stream of procedural faces from ``iter_faces(seed, start, count, resolution)``
(``data = "module:function"``). Image ``i`` of the global stream is rendered from
``(seed, i)``; step ``s`` consumes images ``[nimg, nimg + batch)`` and rank ``r`` of ``W`` takes
the ``r``-th slice, so ranks see disjoint faces and a resumed run sees exactly the images the
uninterrupted run would have seen. Rendering runs in ``num_workers`` DataLoader processes
(0 = in-process).

Distributed: launch under ``torchrun --nproc_per_node=N`` (gloo, CPU). Gradients are averaged
with one flat ``all_reduce`` per optimizer step (no DDP wrapper, which does not support the R1
double-backward); rank 0 writes checkpoints, logs and samples.

Run directory::

    config.json          GanTrainConfig of the run
    checkpoint.pt        G, G_ema, D, optimizers, step, nimg, RNG states (atomic writes)
    log.jsonl            one JSON object per log interval
    samples/reals.png    a grid of training images
    samples/grid_XXXXXX.png   EMA generator on fixed z after step XXXXXX (ψ = 1)
"""

from __future__ import annotations

import copy
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from idinvert.core.device import resolve_device
from idinvert.core.models.generator import (
    ConstBlock,
    ConvBlock,
    Epilogue,
    Generator,
    GeneratorConfig,
    NoiseInput,
    ToRGB,
)
from idinvert.core.models.layers import DenseBlock
from idinvert.training.discriminator import (
    Discriminator,
    DiscriminatorConfig,
    EqualConv2d,
)
from idinvert.training.distributed import DistContext
from idinvert.training.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,  # noqa: F401 - re-exported
    LOCK_FILE,  # noqa: F401 - re-exported
    LOG_FILE,  # noqa: F401 - re-exported
    RUNTIME_FIELDS,
    SAMPLES_DIR,
    RunConfigMixin,
    StatWindow,
    StopFlag,
    append_log,
    check_finite,
    counters_payload,
    load_checkpoint_file,
    lock_run_dir,
    prepare_run_dir,
    progress_bar,
    raise_if_incompatible,
    restore_counters,
    restore_rng,
    resume_checkpoint,
    save_checkpoint,
    stored_config,
    summary,
)
from idinvert.training.splits import resolve_data_fn

DEFAULT_DATA = "idinvert.training.faces:iter_faces"
CHECKPOINT_FORMAT = "idinvert-gan-checkpoint"
CHECKPOINT_VERSION = 1

FaceSource = Callable[..., Iterator[tuple[np.ndarray, dict]]]
#: Latent coordinates the teacher renderer consumes (``idinvert.training.teacher.DRAWS``).
TEACHER_DRAWS = 64


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class GanTrainConfig(RunConfigMixin):
    """Everything that defines a GAN training run (stored in ``config.json`` and checkpoints).

    Architecture:
        resolution: image side R (power of two ≥ 8).
        z_dim, w_dim: latent and per-layer code dimensions.
        mapping_layers, mapping_hidden_dim: depth and hidden width of the mapping MLP.
        fmaps_base, fmaps_max: generator channels ``min(fmaps_base // r, fmaps_max)``.
        d_fmaps_base, d_fmaps_max: the same for D (``None`` = as G).
        The defaults are the bundled 64 px model: G channels 256/192/96/48/24 at 4/8/16/32/64
        px, D 256/128/64/32/16 (see ``README_TRAINING.md`` for the measurements).
        mbstd_group: D minibatch-stddev group size.
        truncation_psi: ψ stored in the exported generator's config (training never truncates).
        truncation_layers: truncated leading layers stored in the generator config; ``None``
            = the layers up to 32 px (8, as the official 256-px models), capped at L.

    Optimisation:
        batch_size: global batch (split over ranks).
        lr, beta1, beta2: Adam for G and D.
        r1_gamma, r1_interval: lazy R1 weight γ and interval k.
        ema_kimg: half-life of the generator EMA in thousands of images.
        ema_rampup: EMA half-life ≤ ``ema_rampup × images seen`` (``None`` = off). Not
            applied to a run started from ``init_generator``: its G_ema starts from trained
            weights, and a ramp-up would make it follow G's early drift against a fresh D.
        w_avg_beta: per-step EMA factor of ``truncation.w_avg``.
        style_mixing_prob: probability that a sample mixes two z's.
        mirror: flip half of the training images horizontally.
        channels_last: run convolutions in NHWC memory format.
        bf16: run G and D forward passes under bfloat16 autocast (AMX on recent Xeons); R1,
            losses, optimizer states and the EMA stay float32.
        teacher_weight: weight of the renderer-as-teacher reconstruction term (0 = the plain
            adversarial recipe). With it, z drives the renderer (:mod:`idinvert.training.
            teacher`) and G(z) of unmixed samples is pulled towards the render of z.
        teacher_perceptual: weight of the shallow-VGG term inside the reconstruction term.
        mapping_lr_scale: Adam lr of the mapping network relative to ``lr`` (on top of its
            built-in ``mapping_lr_mul`` 0.01); > 1 lets a teacher run re-map z quickly.
        init_generator: model directory whose generator weights (and ``w_avg``) start G and
            G_ema of a fresh run (``None`` = random init). D always starts fresh.
        d_warmup_kimg: for the first this many kimg only D trains (G, G_ema and ``w_avg`` stay
            as they are): lets a fresh D catch up with an ``init_generator`` before G follows
            its gradients (without it, continuing from committed weights first makes G worse).

    Data:
        data: ``"module:function"`` of an ``iter_faces``-compatible renderer.
        seed: seed of initialisation, latent sampling and the data stream.

    Runtime (may change when resuming):
        total_kimg: train until this many thousand images (global).
        threads: torch intra-op threads per process.
        num_workers: rendering processes per rank (0 = render in the training process).
        checkpoint_minutes: write ``checkpoint.pt`` at least this often (also at the end).
        max_minutes: stop (with a checkpoint) after this many minutes of this session, even
            before ``total_kimg``; ``None`` = no limit. Resume later to continue.
        sample_every: write a sample grid every this many steps.
        log_every: write a ``log.jsonl`` line every this many steps.
        grid_size: the sample grid is ``grid_size × grid_size`` images.
        progress: show a tqdm bar (rank 0).
        device: ``"cpu"``, ``"cuda[:i]"`` or ``"auto"`` (:func:`idinvert.core.device.
            resolve_device`). On CUDA TF32 is allowed, batches are pinned and copied
            asynchronously, ``bf16`` autocasts on the GPU; a resume is exact only on the CPU
            (CUDA kernels and RNG streams are not bitwise reproducible). Single process only.
    """

    resolution: int = 64
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_hidden_dim: int = 256
    fmaps_base: int = 1536
    fmaps_max: int = 256
    d_fmaps_base: int | None = 1024
    d_fmaps_max: int | None = None
    mbstd_group: int = 4
    truncation_psi: float = 0.7
    truncation_layers: int | None = None

    batch_size: int = 32
    lr: float = 0.002
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.5
    r1_interval: int = 16
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    w_avg_beta: float = 0.995
    style_mixing_prob: float = 0.9
    mirror: bool = False
    channels_last: bool = True
    bf16: bool = False
    teacher_weight: float = 0.0
    teacher_perceptual: float = 1.0
    mapping_lr_scale: float = 1.0
    d_warmup_kimg: float = 0.0
    init_generator: str | None = None

    data: str = DEFAULT_DATA
    seed: int = 0

    total_kimg: float = 400.0
    threads: int = 2
    num_workers: int = 1
    checkpoint_minutes: float = 10.0
    max_minutes: float | None = None
    sample_every: int = 200
    log_every: int = 10
    grid_size: int = 8
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        positive = (
            "batch_size",
            "r1_interval",
            "threads",
            "sample_every",
            "log_every",
            "grid_size",
            "mbstd_group",
            "z_dim",
            "w_dim",
            "mapping_layers",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")
        if min(self.r1_gamma, self.total_kimg, self.ema_kimg, self.d_warmup_kimg) < 0:
            raise ValueError("r1_gamma, total_kimg, ema_kimg and d_warmup_kimg must be >= 0")
        if self.teacher_weight < 0 or self.teacher_perceptual < 0 or self.mapping_lr_scale <= 0:
            raise ValueError(
                "teacher_weight, teacher_perceptual must be >= 0 and mapping_lr_scale > 0"
            )
        if self.teacher_weight > 0 and self.z_dim < TEACHER_DRAWS:
            raise ValueError(f"the teacher needs z_dim >= {TEACHER_DRAWS}, got {self.z_dim}")
        if ":" not in self.data:
            raise ValueError(f"data must be 'module:function', got {self.data!r}")
        self.generator_config()  # validates resolution and widths
        self.discriminator_config()

    # Fields that may differ between a checkpoint and the resuming command.
    RUNTIME_FIELDS = RUNTIME_FIELDS | {"max_minutes"}  # runs.RUNTIME_FIELDS + max_minutes

    def generator_config(self) -> GeneratorConfig:
        """The :class:`GeneratorConfig` of the trained (and exported) generator."""
        num_layers = 2 * (int(math.log2(self.resolution)) - 1) if self.resolution > 0 else 0
        layers = self.truncation_layers
        if layers is None:
            layers = min(8, num_layers)
        return GeneratorConfig(
            resolution=self.resolution,
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            mapping_layers=self.mapping_layers,
            mapping_hidden_dim=self.mapping_hidden_dim,
            fmaps_base=self.fmaps_base,
            fmaps_max=self.fmaps_max,
            truncation_psi=self.truncation_psi,
            truncation_layers=layers,
            randomize_noise=False,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        """The :class:`DiscriminatorConfig` of the trained discriminator."""
        return DiscriminatorConfig(
            resolution=self.resolution,
            fmaps_base=self.fmaps_base if self.d_fmaps_base is None else self.d_fmaps_base,
            fmaps_max=self.fmaps_max if self.d_fmaps_max is None else self.d_fmaps_max,
            mbstd_group=self.mbstd_group,
        )

    def total_steps(self) -> int:
        """Number of optimisation steps for ``total_kimg`` at the global batch size."""
        return math.ceil(round(self.total_kimg * 1000) / self.batch_size)


# ---------------------------------------------------------------------------------------------
# Networks


@torch.no_grad()
def init_generator_weights(G: Generator, generator: torch.Generator | None = None) -> Generator:
    """Initialise ``G`` in place for training under the equalized-learning-rate convention.

    Stored weights are unscaled (the run-time factor is ``gain / sqrt(fan_in) * lr_mul``), so:
    conv and ToRGB weights ~N(0, 1); dense ``fc.weight`` ~N(0, (1/lr_mul)²) — i.e. N(0, 1) for
    the style modulation, N(0, 100²) for the mapping with ``lr_mul = 0.01`` — with zero biases;
    noise weights 0; epilogue and ToRGB biases 0; the constant input 1; ``w_avg`` 0; the fixed
    noise buffers are redrawn ~N(0, 1).

    Args:
        G: the generator (any configuration).
        generator: optional RNG for reproducible draws (else the global RNG).

    Returns:
        ``G``.
    """

    def normal_(t: torch.Tensor, std: float = 1.0) -> None:
        t.copy_(torch.randn(t.shape, generator=generator) * std)

    for m in G.modules():
        if isinstance(m, DenseBlock):
            normal_(m.fc.weight, 1.0 / m.wscale.lr_mul)
            m.wscale.bias.zero_()
        elif isinstance(m, ConvBlock):
            normal_(m.kernel)
        elif isinstance(m, ToRGB):
            normal_(m.conv.weight)
            m.bias.zero_()
        elif isinstance(m, NoiseInput):
            m.weight.zero_()
            normal_(m.noise)
        elif isinstance(m, Epilogue):
            m.bias.zero_()
        elif isinstance(m, ConstBlock):
            m.const.fill_(1.0)
    G.truncation.w_avg.zero_()
    return G


def build_networks(cfg: GanTrainConfig) -> tuple[Generator, Generator, Discriminator]:
    """Fresh ``(G, G_ema, D)`` initialised from ``cfg.seed`` (identical on every rank)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    G = init_generator_weights(Generator(cfg.generator_config()), gen)
    D = init_discriminator_weights(Discriminator(cfg.discriminator_config()), gen)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    return G, G_ema, D


@torch.no_grad()
def init_discriminator_weights(
    D: Discriminator, generator: torch.Generator | None = None
) -> Discriminator:
    """Redraw ``D``'s weights (~N(0, 1), dense ~N(0, (1/lr_mul)²)) and zero its biases."""
    for m in D.modules():
        if isinstance(m, EqualConv2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, DenseBlock):
            std = 1.0 / m.wscale.lr_mul
            m.fc.weight.copy_(torch.randn(m.fc.weight.shape, generator=generator) * std)
            m.wscale.bias.zero_()
    return D


@torch.no_grad()
def load_init_generator(model_dir: str | Path, *nets: Generator) -> None:
    """Copy the generator weights (and ``truncation.w_avg``) of ``model_dir`` into ``nets``."""
    from idinvert.core.modeldir import load_model_dir

    src = load_model_dir(model_dir, "cpu").generator.state_dict()
    for net in nets:
        try:
            net.load_state_dict(src)
        except RuntimeError as exc:
            raise ValueError(
                f"generator of {model_dir} does not match the run's architecture: "
                f"{str(exc).splitlines()[0]}"
            ) from None


def count_parameters(net: nn.Module) -> int:
    """Number of parameter elements."""
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------
# Losses and per-step pieces


def style_mix(
    w1: torch.Tensor, w2: torch.Tensor, prob: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap trailing W+ layers between two sets of codes.

    Each sample mixes with probability ``prob``: layers ``l >= cutoff`` come from ``w2`` with
    ``cutoff`` uniform in ``1..L-1``; non-mixing samples get ``cutoff = L`` (all from ``w1``).

    Args:
        w1, w2: ``[B, L, D]`` codes (e.g. ``mapping(z1)``, ``mapping(z2)`` reshaped).
        prob: mixing probability.
        generator: optional RNG (else the global RNG).

    Returns:
        ``(wp [B, L, D], cutoff [B] long)``.
    """
    b, n_layers, _ = w1.shape
    cutoff = torch.randint(1, max(n_layers, 2), (b,), generator=generator)
    mixing = torch.rand(b, generator=generator) < prob
    cutoff = torch.where(mixing, cutoff, torch.full_like(cutoff, n_layers))
    take_second = torch.arange(n_layers)[None, :] >= cutoff[:, None]  # [B, L]
    wp = torch.where(take_second[:, :, None].to(w1.device), w2, w1)
    return wp, cutoff.to(w1.device)


def sample_wp(G: Generator, batch: int, mixing_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw z's, map them and style-mix: ``(wp [B, L, D], w1_mean [D])``.

    ``w1_mean`` is the mean of the unmixed first mapping output over samples and layers (the
    statistic tracked by ``truncation.w_avg``), detached.
    """
    cfg = G.config
    device = next(G.parameters()).device
    z1 = torch.randn(batch, cfg.z_dim).to(device)
    w1 = G.mapping(z1).view(batch, cfg.num_layers, cfg.w_dim)
    w_mean = w1.detach().mean(dim=(0, 1))
    if mixing_prob > 0:
        z2 = torch.randn(batch, cfg.z_dim).to(device)
        w2 = G.mapping(z2).view(batch, cfg.num_layers, cfg.w_dim)
        wp, _ = style_mix(w1, w2, mixing_prob)
    else:
        wp = w1
    return wp, w_mean


def teacher_wp(
    G: Generator, z1: torch.Tensor, mixing_prob: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`sample_wp` for given first latents ``z1 [B, z_dim]``: ``(wp [B, L, D],
    w1_mean [D], unmixed [B] bool)``; only unmixed samples have a teacher target."""
    cfg = G.config
    batch = z1.shape[0]
    w1 = G.mapping(z1).view(batch, cfg.num_layers, cfg.w_dim)
    w_mean = w1.detach().float().mean(dim=(0, 1))
    if mixing_prob <= 0:
        return w1, w_mean, torch.ones(batch, dtype=torch.bool, device=z1.device)
    z2 = torch.randn(batch, cfg.z_dim).to(z1.device)
    w2 = G.mapping(z2).view(batch, cfg.num_layers, cfg.w_dim)
    wp, cutoff = style_mix(w1, w2, mixing_prob)
    return wp, w_mean, cutoff >= cfg.num_layers


def training_device(spec: str, ctx: DistContext) -> torch.device:
    """The device of a training run (:func:`resolve_device`); on CUDA also allows TF32 and
    cuDNN autotuning.

    Raises:
        ValueError: the device is not present, or CUDA was asked for with several ranks
            (gradients are averaged over gloo on CPU tensors).
    """
    device = resolve_device(spec)
    if device.type == "cuda":
        if ctx.world > 1:
            raise ValueError("CUDA training is single-process; use --device cpu under torchrun")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return device


def autocast(cfg: GanTrainConfig, device_type: str = "cpu") -> torch.autocast:
    """bfloat16 autocast on ``device_type`` when ``cfg.bf16`` (a disabled context otherwise)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16)


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(D(fake))) + mean(softplus(−D(real)))`` (scalar)."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(−D(G(z))))`` (scalar)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(D: nn.Module, reals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``‖∇ₓ D(x)‖²`` on reals ``[B, C, R, R]`` → ``(penalty [B], logits [B])``.

    The graph is kept (``create_graph=True``) so the penalty can be back-propagated into D.
    """
    reals = reals.detach().requires_grad_(True)
    logits = D(reals)
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)), logits


def ema_beta(cfg: GanTrainConfig, nimg: int) -> float:
    """EMA factor of one step at ``nimg`` images seen (0 at the start when ramping up)."""
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup is not None and not cfg.init_generator:
        ema_nimg = min(ema_nimg, nimg * cfg.ema_rampup)
    return 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """``p_ema ← beta · p_ema + (1 − beta) · p``; buffers are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


@torch.no_grad()
def update_w_avg(G: Generator, w_mean: torch.Tensor, beta: float) -> None:
    """``w_avg ← beta · w_avg + (1 − beta) · w_mean`` (``w_mean [D]``)."""
    w_avg = G.truncation.w_avg
    w_avg.copy_(w_mean.lerp(w_avg, beta))


def make_optimizers(
    cfg: GanTrainConfig, G: nn.Module, D: nn.Module
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D; D's lr and betas are adjusted for lazy R1 (``c = k / (k + 1)``)."""
    c = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1_gamma > 0 else 1.0
    groups: Any = G.parameters()
    if cfg.mapping_lr_scale != 1.0:
        mapping = {id(p) for p in G.mapping.parameters()}
        groups = [
            {"params": [p for p in G.parameters() if id(p) not in mapping]},
            {"params": list(G.mapping.parameters()), "lr": cfg.lr * cfg.mapping_lr_scale},
        ]
    opt_G = torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    opt_D = torch.optim.Adam(
        D.parameters(), lr=cfg.lr * c, betas=(cfg.beta1**c, cfg.beta2**c), eps=1e-8
    )
    return opt_G, opt_D


# ---------------------------------------------------------------------------------------------
# Data


class FaceBatches(IterableDataset):
    """Endless (or ``num_steps``-long) stream of uint8 batches ``[B, R, R, 3]`` for one rank.

    Step ``k`` (counted from this stream's start) holds global images
    ``first_image + k·B·W + r·B + [0, B)`` for rank ``r`` of ``W`` with per-rank batch ``B``.
    DataLoader workers take every ``num_workers``-th step; the loader's round-robin order keeps
    the steps in sequence. Mirroring, when enabled, is seeded by the image index.
    """

    def __init__(
        self,
        data: str,
        seed: int,
        resolution: int,
        per_rank_batch: int,
        first_image: int,
        rank: int = 0,
        world: int = 1,
        num_steps: int | None = None,
        mirror: bool = False,
    ) -> None:
        super().__init__()
        self.data, self.seed, self.resolution = data, seed, resolution
        self.batch, self.first_image = per_rank_batch, first_image
        self.rank, self.world = rank, world
        self.num_steps, self.mirror = num_steps, mirror

    def start_index(self, k: int) -> int:
        """Global index of the first image of step ``k`` for this rank."""
        return self.first_image + (k * self.world + self.rank) * self.batch

    def render(self, k: int, fn: FaceSource | None = None) -> torch.Tensor:
        """The batch of step ``k``: uint8 ``[B, R, R, 3]``."""
        fn = fn or resolve_data_fn(self.data)
        start = self.start_index(k)
        images = [img for img, _ in fn(self.seed, start, self.batch, self.resolution)]
        batch = np.stack(images)
        if batch.shape != (self.batch, self.resolution, self.resolution, 3):
            raise ValueError(
                f"renderer returned images of shape {batch.shape[1:]}, expected "
                f"({self.resolution}, {self.resolution}, 3)"
            )
        if self.mirror:
            flip = np.random.default_rng([self.seed, start, 7]).random(self.batch) < 0.5
            batch[flip] = batch[flip, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(batch))

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        fn = resolve_data_fn(self.data)
        k = worker
        while self.num_steps is None or k < self.num_steps:
            yield self.render(k, fn)
            k += num_workers


def uint8_to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` → float ``[B, 3, H, W]`` in [−1, 1] (NHWC memory, a free view)."""
    return batch.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)


def _worker_init(worker_id: int) -> None:
    # Ctrl-C is handled by the training process (it finishes the step and checkpoints); a
    # worker dying on SIGINT first would break that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: IterableDataset, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over pre-batched items that never touches the global RNG (``pin_memory``
    for asynchronous copies to a GPU)."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )


# ---------------------------------------------------------------------------------------------
# Images


def images_to_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    """``[N, 3, H, W]`` in [−1, 1] → uint8 grid ``[rows·H, cols·W, 3]`` (row-major)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).cpu()
    n, c, h, w = x.shape
    rows = math.ceil(n / cols)
    pad = rows * cols - n
    if pad:
        x = torch.cat([x, torch.zeros(pad, c, h, w, dtype=torch.uint8)])
    grid = x.view(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    return grid.numpy()


def save_image(array: np.ndarray, path: Path) -> None:
    """Write a uint8 ``[H, W, 3]`` array as PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def grid_latents(cfg: GanTrainConfig) -> torch.Tensor:
    """The fixed z's of the sample grids, ``[grid_size², z_dim]`` (from ``cfg.seed``)."""
    gen = torch.Generator().manual_seed(cfg.seed + 123_457)
    return torch.randn(cfg.grid_size**2, cfg.z_dim, generator=gen)


@torch.no_grad()
def render_samples(
    G: Generator, z: torch.Tensor, chunk: int = 32, psi: float = 1.0
) -> torch.Tensor:
    """``z [N, z_dim]`` → images ``[N, 3, R, R]`` (on G's device) with fixed noise and
    truncation ``psi``."""
    z = z.to(next(G.parameters()).device)
    out = [G.synthesis(G.z_to_wp(zc, psi=psi), randomize_noise=False) for zc in z.split(chunk)]
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train_gan` (``weights_only=True``, CPU)."""
    return load_checkpoint_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "GAN")


def load_run_config(run_dir: str | Path) -> GanTrainConfig | None:
    """The config of an existing run (from ``checkpoint.pt``), or ``None`` if there is none."""
    return stored_config(run_dir, load_checkpoint, GanTrainConfig)


def export_generator(run_dir: str | Path, ema: bool = True) -> Generator:
    """The trained generator of a run (EMA weights by default), eval mode, CPU, float32.

    ``truncation.w_avg`` holds the tracked mean code; the config carries ``truncation_psi`` and
    ``truncation_layers`` from the training config. The result loads into/out of a model
    directory with :func:`idinvert.core.modeldir.save_model_dir`.
    """
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT_FILE)
    cfg = GanTrainConfig.from_dict(ckpt["config"])
    G = Generator(cfg.generator_config())
    state = {k: v.contiguous() for k, v in ckpt["G_ema" if ema else "G"].items()}
    G.load_state_dict(state)
    return G.eval()


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainState:
    """Mutable state of a run (what a checkpoint restores)."""

    G: Generator
    G_ema: Generator
    D: Discriminator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step: int = 0
    nimg: int = 0
    elapsed_sec: float = 0.0


def train_step(
    state: TrainState,
    reals: torch.Tensor,
    cfg: GanTrainConfig,
    ctx: DistContext,
    z: torch.Tensor | None = None,
    perceptual: nn.Module | None = None,
) -> dict[str, float]:
    """One D update (+ lazy R1 update) and one G update on this rank's ``reals``.

    Args:
        state: networks and optimizers (``step``/``nimg`` are not advanced here).
        reals: ``[B, 3, R, R]`` in [−1, 1].
        cfg: the run config.
        ctx: distributed context (gradients are averaged over ranks).
        z: teacher recipe only: the latents ``[B, z_dim]`` whose renders are ``reals``.
        perceptual: teacher recipe: the shallow VGG of the reconstruction term (or ``None``).

    Returns:
        Local statistics (floats): ``loss_D``, ``loss_G``, ``d_real``, ``d_fake``, on R1
        steps ``r1`` (mean squared gradient norm before γ/2), with a teacher ``rec_l1`` (and
        ``rec_vgg``).
    """
    G, D = state.G, state.D
    batch = reals.shape[0]
    teach = z is not None and cfg.teacher_weight > 0
    warmup = state.nimg < cfg.d_warmup_kimg * 1000
    device_type = reals.device.type
    with autocast(cfg, device_type), torch.set_grad_enabled(not warmup):
        if teach:
            wp, w_mean, unmixed = teacher_wp(G, z, cfg.style_mixing_prob)
        else:
            wp, w_mean = sample_wp(G, batch, cfg.style_mixing_prob)
        fakes = G.synthesis(wp, randomize_noise=True)

    # D: logistic loss on reals and (detached) fakes.
    D.requires_grad_(True)
    with autocast(cfg, device_type):
        fake_logits = D(fakes.detach()).float()
        real_logits = D(reals).float()
    loss_D = d_logistic_loss(real_logits, fake_logits)
    state.opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    d_params = list(D.parameters())
    ctx.average_grads(d_params)
    state.opt_D.step()
    stats = {
        "loss_D": loss_D.item(),
        "d_real": real_logits.detach().mean().item(),
        "d_fake": fake_logits.detach().mean().item(),
    }

    # Lazy R1: a separate optimizer step every r1_interval steps, weighted by the interval.
    if cfg.r1_gamma > 0 and state.step % cfg.r1_interval == 0:
        penalty, logits = r1_penalty(D, reals)
        loss_r1 = (penalty * (cfg.r1_gamma / 2) + logits * 0).mean() * cfg.r1_interval
        state.opt_D.zero_grad(set_to_none=True)
        loss_r1.backward()
        ctx.average_grads(d_params)
        state.opt_D.step()
        stats["r1"] = penalty.detach().mean().item()

    if warmup:  # D warm-up: G is not updated
        stats["loss_G"] = g_nonsaturating_loss(fake_logits).item()
        return stats

    # G: non-saturating loss through the updated, frozen D.
    D.requires_grad_(False)
    with autocast(cfg, device_type):
        loss_G = g_nonsaturating_loss(D(fakes).float())
        total_G = loss_G
        if teach and bool(unmixed.any()):
            from idinvert.training.teacher import reconstruction_loss

            rec, rec_stats = reconstruction_loss(
                fakes[unmixed], reals[unmixed], perceptual, cfg.teacher_perceptual
            )
            total_G = loss_G + cfg.teacher_weight * rec
            stats.update(rec_stats)
    state.opt_G.zero_grad(set_to_none=True)
    total_G.backward()
    ctx.average_grads(list(G.parameters()))
    state.opt_G.step()
    D.requires_grad_(True)
    stats["loss_G"] = loss_G.item()

    update_w_avg(G, ctx.all_reduce_mean_(w_mean), cfg.w_avg_beta)
    return stats


_StopFlag = StopFlag  # former private name (moved to runs.StopFlag)


def _checkpoint_payload(state: TrainState, cfg: GanTrainConfig, rng: torch.Tensor) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": cfg.to_dict(),
        "G": state.G.state_dict(),
        "G_ema": state.G_ema.state_dict(),
        "D": state.D.state_dict(),
        "opt_G": state.opt_G.state_dict(),
        "opt_D": state.opt_D.state_dict(),
        **counters_payload(state, rng),
    }


def _restore(state: TrainState, ckpt: dict[str, Any]) -> None:
    state.G.load_state_dict(ckpt["G"])
    state.G_ema.load_state_dict(ckpt["G_ema"])
    state.D.load_state_dict(ckpt["D"])
    state.opt_G.load_state_dict(ckpt["opt_G"])
    state.opt_D.load_state_dict(ckpt["opt_D"])
    restore_counters(state, ckpt)


class _Window(StatWindow):
    """Sums of per-step statistics between two log lines."""

    KEYS = ("loss_D", "loss_G", "d_real", "d_fake", "r1", "rec_l1", "rec_vgg")


def train_gan(cfg: GanTrainConfig, run_dir: str | Path, resume: bool = True) -> dict[str, Any]:
    """Train (or resume training) a GAN into ``run_dir`` until ``cfg.total_kimg``.

    Resuming (``resume=True`` and ``run_dir/checkpoint.pt`` exists) restores networks,
    optimizers, step, image count and RNG states, and continues the data stream where it
    stopped, so an interrupted run ends with the same weights as an uninterrupted one (same
    world size and threads). Only :attr:`GanTrainConfig.RUNTIME_FIELDS` may differ from the
    checkpoint's config; other differences raise ``ValueError``. ``resume=False`` starts over
    and replaces an existing checkpoint, log and sample grids.

    SIGINT/SIGTERM (and ``cfg.max_minutes``) finish the current step, write a checkpoint and
    return with ``stopped=True``.

    Args:
        cfg: run configuration.
        run_dir: output directory (created).
        resume: continue from an existing checkpoint.

    Returns:
        Summary: ``step``, ``nimg``, ``kimg``, ``stopped`` (by a signal or ``max_minutes``),
        the last logged statistics under ``last``, ``run_dir``, and ``state`` (this rank's
        :class:`TrainState`: networks and optimizers, e.g. to continue in memory).
    """
    run_dir = Path(run_dir)
    ctx = DistContext.from_env()
    lock = lock_run_dir(run_dir) if ctx.is_main else None
    try:
        return _train(cfg, run_dir, resume, ctx)
    finally:
        if lock is not None:
            lock.close()
        ctx.close()


def _train(cfg: GanTrainConfig, run_dir: Path, resume: bool, ctx: DistContext) -> dict[str, Any]:
    ctx.check_batch(cfg.batch_size)
    torch.set_num_threads(cfg.threads)
    device = training_device(cfg.device, ctx)
    ckpt_path, ckpt = resume_checkpoint(run_dir, resume, load_checkpoint)
    if ckpt is not None:
        raise_if_incompatible(
            cfg.incompatible_with(GanTrainConfig.from_dict(ckpt["config"])), ckpt_path
        )
    if ctx.is_main:
        prepare_run_dir(run_dir, cfg, fresh=ckpt is None)

    G, G_ema, D = build_networks(cfg)
    if ckpt is None and cfg.init_generator:
        load_init_generator(cfg.init_generator, G, G_ema)
    for net in (G, G_ema, D):
        net.to(device)
        if cfg.channels_last:
            net.to(memory_format=torch.channels_last)
    opt_G, opt_D = make_optimizers(cfg, G, D)
    state = TrainState(G, G_ema, D, opt_G, opt_D)
    if ckpt is not None:
        _restore(state, ckpt)
    ctx.broadcast_(
        [*G.parameters(), *G.buffers(), *G_ema.parameters(), *G_ema.buffers(), *D.parameters()]
    )
    G.train()
    D.train()

    per_rank = cfg.batch_size // ctx.world
    total_steps = cfg.total_steps()
    dataset: IterableDataset
    perceptual = None
    if cfg.teacher_weight > 0:
        from idinvert.training.teacher import TeacherBatches, load_shallow_vgg

        dataset = TeacherBatches(
            cfg.seed,
            cfg.resolution,
            per_rank,
            cfg.z_dim,
            state.step,
            ctx.rank,
            num_steps=max(total_steps - state.step, 0),
        )
        perceptual = load_shallow_vgg() if cfg.teacher_perceptual > 0 else None
        if perceptual is not None:
            perceptual.to(device)
    else:
        dataset = FaceBatches(
            cfg.data,
            cfg.seed,
            cfg.resolution,
            per_rank,
            state.nimg,
            ctx.rank,
            ctx.world,
            num_steps=max(total_steps - state.step, 0),
            mirror=cfg.mirror,
        )
    batches = iter(make_loader(dataset, cfg.num_workers, pin_memory=device.type == "cuda"))

    restore_rng(ckpt, ctx, cfg.seed, state.step if ckpt else 0)

    grid_z = grid_latents(cfg)
    if ctx.is_main and ckpt is None:
        _write_grid(G_ema, grid_z, run_dir, state.step, cfg)
    return _loop(state, cfg, ctx, run_dir, batches, total_steps, grid_z, perceptual)


def _write_grid(
    G_ema: Generator, z: torch.Tensor, run_dir: Path, step: int, cfg: GanTrainConfig
) -> Path:
    path = run_dir / SAMPLES_DIR / f"grid_{step:06d}.png"
    save_image(images_to_grid(render_samples(G_ema, z), cfg.grid_size), path)
    return path


def _loop(
    state: TrainState,
    cfg: GanTrainConfig,
    ctx: DistContext,
    run_dir: Path,
    batches: Iterator[torch.Tensor],
    total_steps: int,
    grid_z: torch.Tensor,
    perceptual: nn.Module | None = None,
) -> dict[str, Any]:
    bar = progress_bar(total_steps, state.step, ctx.is_main and cfg.progress)
    device = next(state.G.parameters()).device
    window = _Window()
    last: dict[str, Any] = {}
    last_ckpt = session_start = time.monotonic()
    t_start = time.perf_counter() - state.elapsed_sec
    stopped = False
    with StopFlag() as stop:
        while state.step < total_steps:
            item = next(batches)
            z, reals_u8 = item if isinstance(item, (tuple, list)) else (None, item)
            if z is not None:
                z = z.to(device, non_blocking=True)
            reals_png = run_dir / SAMPLES_DIR / "reals.png"
            if ctx.is_main and state.step == 0 and not reals_png.exists():
                grid = images_to_grid(uint8_to_float(reals_u8[: cfg.grid_size**2]), cfg.grid_size)
                save_image(grid, reals_png)
            reals = uint8_to_float(reals_u8.to(device, non_blocking=True))
            stats = train_step(state, reals, cfg, ctx, z, perceptual)
            update_ema(state.G_ema, state.G, ema_beta(cfg, state.nimg))
            state.step += 1
            state.nimg += cfg.batch_size
            state.elapsed_sec = time.perf_counter() - t_start
            window.add(stats)
            bar.update(1)

            done = state.step >= total_steps
            now = time.monotonic()
            due = now - last_ckpt >= cfg.checkpoint_minutes * 60
            timeout = cfg.max_minutes is not None and now - session_start >= cfg.max_minutes * 60
            flags = ctx.all_reduce_max_(
                torch.tensor([float(stop.requested or timeout), float(due)])
            )
            stopping, save = bool(flags[0]), bool(flags[1]) or done or bool(flags[0])

            if state.step % cfg.log_every == 0 or done or stopping:
                last = _log(state, cfg, ctx, run_dir, window, bar)
            if ctx.is_main and (state.step % cfg.sample_every == 0 or done):
                _write_grid(state.G_ema, grid_z, run_dir, state.step, cfg)
            if save:
                rng = ctx.gather_rng_states()
                if ctx.is_main:
                    save_checkpoint(run_dir / CHECKPOINT_FILE, _checkpoint_payload(state, cfg, rng))
                last_ckpt = time.monotonic()
            if stopping and not done:
                stopped = True
                break
    bar.close()
    return {**summary(state, stopped, last, run_dir), "state": state}


def _log(
    state: TrainState,
    cfg: GanTrainConfig,
    ctx: DistContext,
    run_dir: Path,
    window: _Window,
    bar: Any,
) -> dict[str, Any]:
    means = window.means(ctx)
    timing = window.timing(cfg.batch_size)
    check_finite(means, ("loss_D", "loss_G"), state.step)
    record: dict[str, Any] = {
        "step": state.step,
        "kimg": round(state.nimg / 1000, 3),
        **{k: (round(v, 5) if v is not None else None) for k, v in means.items()},
        **timing,
        "w_avg_norm": round(float(state.G.truncation.w_avg.norm()), 4),
        "time_sec": round(state.elapsed_sec, 1),
    }
    if ctx.is_main:
        append_log(run_dir, record)
        bar.set_postfix(
            kimg=f"{record['kimg']:.1f}",
            D=f"{means['loss_D']:.3f}",
            G=f"{means['loss_G']:.3f}",
            ips=f"{record['images_per_sec']:.0f}",
            refresh=False,
        )
    window.reset()
    return record
