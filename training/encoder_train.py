"""Domain-guided encoder training (IDInvert §3.2) on CPU, for idinvert's own models.

Objective (official TF ``loss_encoder.py``; all terms are batch means)::

    L_E = ‖x − G(E(x))‖²  +  λ_vgg ‖F(x) − F(G(E(x)))‖²  +  λ_adv softplus(−D(G(E(x))))
    L_D = softplus(D(G(E(x))))  +  softplus(−D(x))  +  γ/2 ‖∇ₓ D(x)‖²

with λ_vgg = 5e-5, λ_adv = 0.08 (``train_encoder.py``), G the frozen EMA generator of a GAN run
(fixed noise), D initialised from the same run's discriminator and kept training, Adam
β = (0.9, 0.99) for E and D, lr ``lr₀ · 0.8^(images / decay_images)`` (continuous decay), one E
update then one D update per iteration on the same batch of *real* renders with random
horizontal flips (mirror augmentation on, as in the paper).

Our choices where the paper's setting does not carry over (all stored in ``config.json``):

* **Encoder**: our :class:`~idinvert.core.models.encoder.Encoder` (the official PyTorch port's
  architecture, BatchNorm after every conv and on the output codes) with narrower channels
  (``channels_base`` 32, ``channels_max`` 256 → ≈ 6.5 M parameters at 64 px, so the bundled model
  stays under 25 MiB in fp16) and ``trainable_gamma=True``: the official *training* network (TF,
  sync-BN) learns both BN scale and shift; the PyTorch port only freezes γ because it is
  inference-only. Weights are initialised N(0, 0.02) with zero biases (TF ``networks_encoder``);
  additionally the output BN's shift/scale start at the per-feature mean/std of the generator's
  W+ codes, so ``E`` emits in-distribution codes from step 0 (pure initialisation; it does not
  change the objective). ``init_encoder`` (a model directory) warm-starts from a trained
  encoder of the same architecture instead (e.g. the previous bundled model's, when its
  generator is continued or retrained): its weights and BatchNorm statistics are loaded, then
  the output BN is re-matched to the new generator's codes as above.
* **Learning rate**: the paper's 1e-4 is for batch 128; Adam's square-root scaling rule gives
  ``1e-4 · sqrt(batch / 128)`` (3.5e-5 at batch 16). ``decay_kimg`` defaults to a quarter of the
  run (official ``decay_step = max_iters // 4``; the official double increment of
  ``global_step`` is not reproduced).
* **R1 γ**: ``‖∇ₓ D‖²`` sums over pixels; for the same function of a ×k down-sampled image it is
  k² larger, so the penalty strength that matches γ = 10 at 256 px is ``10 · (R / 256)²``
  (0.625 at 64 px; our GAN trainer uses 0.5 at 64 px, the same order). R1 is applied every
  iteration (``r1_interval`` 1, as the official encoder loop).
* **VGG**: F is torchvision's ImageNet VGG16 to ReLU(conv4_3) with ``output_scale`` (from
  :func:`idinvert.hub.vgg_weights.vgg16_perceptual_net`), run at the training resolution (the
  official code resizes to 256 first: 16× the cost on CPU). Without VGG weights the term is
  dropped and ``perceptual: "none"`` is recorded.
* **Latent warm-up** (off by default, not in the paper): ``latent_weight · ‖E(G(w)) − w‖²`` on
  freshly generated pairs (ψ = 1) during the first ``latent_kimg`` thousand images. It gives E a
  direct W+ target while the adversarial/pixel terms alone move it slowly, which matters on a
  CPU budget of ~1 % of the paper's images; generated and real images share one E forward so
  BatchNorm sees one batch.
* The D step reuses the reconstructions of the E step (detached, from before E's update)
  instead of re-running G; BatchNorm statistics are per process under torchrun (no sync-BN on
  CPU); running statistics are averaged over ranks before every checkpoint and sample grid.

Run directory::

    config.json       EncoderTrainConfig (resolved)
    checkpoint.pt     E, D, the frozen G it trains against, optimizers, step, RNG (atomic)
    log.jsonl         one JSON object per log interval
    samples/grid_XXXXXX.png   validation renders: input | G(E(x)) pairs
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.perceptual import PerceptualNet
from idinvert.training import gan
from idinvert.training.discriminator import Discriminator, DiscriminatorConfig
from idinvert.training.distributed import DistContext
from idinvert.training.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,  # noqa: F401 - re-exported
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
from idinvert.training.splits import (
    check_train_seed,
    render_faces,
    to_float_images,
    validation_seed,
)

CHECKPOINT_FORMAT = "idinvert-encoder-checkpoint"
CHECKPOINT_VERSION = 1
PAPER_BATCH = 128
PAPER_LR = 1e-4
PAPER_R1_GAMMA = 10.0
PAPER_RESOLUTION = 256


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class EncoderTrainConfig(RunConfigMixin):
    """Everything that defines an encoder training run (``config.json`` and checkpoints).

    ``None`` fields are filled by :meth:`resolved` from the GAN run before training starts, so
    the stored config is explicit.

    Architecture:
        channels_base, channels_max: encoder widths (first block; cap).
        trainable_gamma: train the BatchNorm scales (official TF training: yes).

    Objective:
        pixel_weight, perceptual_weight, adversarial_weight: 1, 5e-5, 0.08 (official).
        latent_weight, latent_kimg: optional latent-reconstruction warm-up on generated images
            (0 = off); active for the first ``latent_kimg`` thousand images (0 = whole run).
        r1_gamma: R1 weight γ (``None`` = ``10 · (R / 256)²``); r1_interval: every k steps.
        perceptual: ``"auto"`` (torchvision VGG16 if available), ``"torchvision"`` (required)
            or ``"none"``; resolved to ``"torchvision"``/``"none"``.

    Optimisation:
        batch_size: global batch; lr: ``None`` = ``1e-4 · sqrt(batch / 128)``;
        beta1, beta2: Adam (0.9, 0.99); decay_kimg: lr halves… (×0.8) every this many
        thousand images (``None`` = total_kimg / 4); mirror: random horizontal flips;
        channels_last: NHWC convolutions.

    Data:
        gan_run: GAN run directory (G_ema and D are taken from its checkpoint).
        data, data_seed: renderer and training stream (``None`` = the GAN run's).
        seed: initialisation and latent sampling.
        init_encoder: model directory whose ``encoder.safetensors`` initialises E (warm start;
            ``""`` = the N(0, 0.02) initialisation).

    Runtime (may change when resuming): total_kimg, threads, num_workers, checkpoint_minutes,
    sample_every, log_every, grid_size, progress, device (``"cpu"``, ``"cuda[:i]"``, ``"auto"``;
    on CUDA: TF32, pinned batches, a resume that is not bitwise exact).
    """

    gan_run: str = ""
    channels_base: int = 32
    channels_max: int = 256
    trainable_gamma: bool = True

    pixel_weight: float = 1.0
    perceptual_weight: float = 5e-5
    adversarial_weight: float = 0.08
    latent_weight: float = 0.0
    latent_kimg: float = 0.0
    r1_gamma: float | None = None
    r1_interval: int = 1
    perceptual: str = "auto"

    batch_size: int = 16
    lr: float | None = None
    beta1: float = 0.9
    beta2: float = 0.99
    decay_kimg: float | None = None
    mirror: bool = True
    channels_last: bool = True

    data: str | None = None
    data_seed: int | None = None
    seed: int = 0
    init_encoder: str = ""

    total_kimg: float = 80.0
    threads: int = 2
    num_workers: int = 1
    checkpoint_minutes: float = 10.0
    sample_every: int = 250
    log_every: int = 10
    grid_size: int = 6
    progress: bool = True
    device: str = "cpu"

    RUNTIME_FIELDS = RUNTIME_FIELDS  # the shared set of runs.py

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "r1_interval",
            "threads",
            "sample_every",
            "log_every",
            "grid_size",
            "channels_base",
            "channels_max",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in (
            "pixel_weight",
            "perceptual_weight",
            "adversarial_weight",
            "latent_weight",
            "latent_kimg",
            "total_kimg",
        ):
            value = float(getattr(self, name))
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.perceptual not in ("auto", "torchvision", "none"):
            raise ValueError(
                f"perceptual must be auto, torchvision or none, got {self.perceptual!r}"
            )
        for name in ("lr", "decay_kimg", "r1_gamma"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr is not None and self.lr == 0:
            raise ValueError("lr must be > 0")
        if self.data_seed is not None:
            check_train_seed(self.data_seed, "data_seed")

    def resolved(self, gan_cfg: gan.GanTrainConfig, vgg_available: bool) -> EncoderTrainConfig:
        """A copy with every ``None``/``"auto"`` field filled in (see the class docstring)."""
        r = gan_cfg.resolution
        perceptual = self.perceptual
        if perceptual == "auto":
            perceptual = "torchvision" if vgg_available and self.perceptual_weight > 0 else "none"
        return dataclasses.replace(
            self,
            gan_run=str(Path(self.gan_run).resolve()) if self.gan_run else "",
            init_encoder=str(Path(self.init_encoder).resolve()) if self.init_encoder else "",
            r1_gamma=PAPER_R1_GAMMA * (r / PAPER_RESOLUTION) ** 2
            if self.r1_gamma is None
            else self.r1_gamma,
            lr=PAPER_LR * math.sqrt(self.batch_size / PAPER_BATCH) if self.lr is None else self.lr,
            decay_kimg=max(self.total_kimg / 4, 1e-3)
            if self.decay_kimg is None
            else self.decay_kimg,
            data=gan_cfg.data if self.data is None else self.data,
            data_seed=gan_cfg.seed if self.data_seed is None else self.data_seed,
            perceptual=perceptual,
        )

    def encoder_config(self, g_cfg: GeneratorConfig) -> EncoderConfig:
        """The :class:`EncoderConfig` of the trained encoder for generator ``g_cfg``."""
        return EncoderConfig(
            resolution=g_cfg.resolution,
            w_dim=g_cfg.w_dim,
            num_layers=g_cfg.num_layers,
            channels_base=self.channels_base,
            channels_max=self.channels_max,
            trainable_gamma=self.trainable_gamma,
        )

    def total_steps(self) -> int:
        """Iterations for ``total_kimg`` at the global batch size."""
        return math.ceil(round(self.total_kimg * 1000) / self.batch_size)

    def lr_at(self, nimg: int) -> float:
        """Learning rate after ``nimg`` images: ``lr · 0.8^(nimg / (1000 · decay_kimg))``."""
        assert self.lr is not None and self.decay_kimg is not None, "call resolved() first"
        return self.lr * 0.8 ** (nimg / max(self.decay_kimg * 1000, 1e-9))

    def latent_active(self, nimg: int) -> bool:
        """Whether the latent warm-up term is on at ``nimg`` images."""
        if self.latent_weight <= 0:
            return False
        return self.latent_kimg <= 0 or nimg < self.latent_kimg * 1000


# ---------------------------------------------------------------------------------------------
# Networks


def find_perceptual_net(device: torch.device | str = "cpu") -> PerceptualNet | None:
    """torchvision's ImageNet VGG16 (scaled) from :mod:`idinvert.hub.vgg_weights`, or ``None``.

    Returns ``None`` when the module or the weights are unavailable (offline without a copy).
    The network is frozen and in eval mode.
    """
    try:
        from idinvert.hub.vgg_weights import vgg16_perceptual_net
    except ImportError:
        return None
    net = vgg16_perceptual_net(device)
    if net is not None:
        net.eval().requires_grad_(False)
    return net


@torch.no_grad()
def init_encoder_weights(E: Encoder, generator: torch.Generator | None = None) -> Encoder:
    """TF ``networks_encoder`` initialisation: conv/dense weights ~N(0, 0.02), biases 0,
    BatchNorm γ = 1, β = 0, running statistics reset."""
    for m in E.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    for name, p in E.named_parameters():
        if name.endswith("wscale1.bias") or name.endswith("wscale2.bias"):
            p.zero_()
    return E


def output_bn(E: Encoder) -> nn.BatchNorm2d:
    """The BatchNorm over the encoder's ``L·D`` output features."""
    return getattr(E, f"block{E.config.num_blocks - 1}").bn.bn


@torch.no_grad()
def match_code_statistics(
    E: Encoder, G: Generator, num: int = 2048, generator: torch.Generator | None = None
) -> None:
    """Set E's output BatchNorm to emit W+ codes with the generator's per-feature mean/std.

    ``wp = G.z_to_wp(z, psi=1)`` for ``num`` random z; BN ``β ← mean(wp)``, ``γ ← std(wp)``
    (features in ``l·D + d`` order, as ``Encoder.forward`` reshapes them).
    """
    z = torch.randn(num, G.config.z_dim, generator=generator)
    wp = torch.cat([G.z_to_wp(zc, psi=1.0) for zc in z.split(256)]).flatten(1)
    bn = output_bn(E)
    bn.bias.copy_(wp.mean(0))
    bn.weight.copy_(wp.std(0).clamp_min(1e-3))


def build_encoder(cfg: EncoderTrainConfig, G: Generator, *, warm_start: bool = True) -> Encoder:
    """A new encoder for ``G`` (identical on every rank): initialised from ``cfg.seed``, or
    loaded from ``cfg.init_encoder`` when set and ``warm_start`` (a resumed run passes
    ``False``: its checkpoint replaces the weights anyway); the output BatchNorm is matched to
    ``G``'s code statistics in both cases."""
    gen = torch.Generator().manual_seed(cfg.seed)
    E = init_encoder_weights(Encoder(cfg.encoder_config(G.config)), gen)
    if cfg.init_encoder and warm_start:
        load_encoder_weights(E, Path(cfg.init_encoder))
    match_code_statistics(E, G, generator=gen)
    return E


def load_encoder_weights(E: Encoder, model_dir: Path) -> None:
    """Copy a model directory's ``encoder.safetensors`` into ``E`` (float32).

    Raises:
        ValueError: the file is missing or unreadable, or its tensors do not match ``E``'s
            architecture (names and shapes listed).
    """
    from idinvert.core.modeldir import ENCODER_FILE, ModelFormatError, load_weights_into

    try:
        load_weights_into(E, model_dir / ENCODER_FILE)
    except ModelFormatError as exc:
        raise ValueError(f"init_encoder: {exc}") from None


def load_gan_parts(run_dir: str | Path) -> tuple[gan.GanTrainConfig, dict[str, Any]]:
    """``(GanTrainConfig, checkpoint dict)`` of a GAN run (``weights_only`` load)."""
    path = Path(run_dir) / gan.CHECKPOINT_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir}: no GAN checkpoint ({gan.CHECKPOINT_FILE}); train a GAN first")
    ckpt = gan.load_checkpoint(path)
    return gan.GanTrainConfig.from_dict(ckpt["config"]), ckpt


def frozen_generator(g_cfg: GeneratorConfig, state: dict[str, torch.Tensor]) -> Generator:
    """A :class:`Generator` with ``state``, eval mode, no parameter gradients."""
    G = Generator(g_cfg)
    G.load_state_dict({k: v.contiguous() for k, v in state.items()})
    return G.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# One iteration


@dataclass
class EncoderState:
    """Mutable state of a run (what a checkpoint restores)."""

    E: Encoder
    D: Discriminator
    G: Generator
    opt_E: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step: int = 0
    nimg: int = 0
    elapsed_sec: float = 0.0


def make_optimizers(
    cfg: EncoderTrainConfig, E: nn.Module, D: nn.Module
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam(β1, β2, ε = 1e-8) for the trainable E parameters and for D."""
    betas = (cfg.beta1, cfg.beta2)
    lr = cfg.lr or PAPER_LR
    params = [p for p in E.parameters() if p.requires_grad]
    return (
        torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8),
        torch.optim.Adam(D.parameters(), lr=lr, betas=betas, eps=1e-8),
    )


def set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def encoder_losses(
    state: EncoderState,
    reals: torch.Tensor,
    cfg: EncoderTrainConfig,
    perceptual: PerceptualNet | None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """The E objective on ``reals [B, 3, R, R]`` in [−1, 1].

    Returns:
        ``(loss_E scalar with graph, reconstructions [B, 3, R, R] detached, stats)``.
    """
    E, G, D = state.E, state.G, state.D
    b = reals.shape[0]
    inputs, wp_gen = reals, None
    if cfg.latent_active(state.nimg):
        with torch.no_grad():
            z = torch.randn(b, G.config.z_dim).to(reals.device)
            wp_gen = G.z_to_wp(z, psi=1.0)
            inputs = torch.cat([reals, G.synthesis(wp_gen)])
    codes = E(inputs)
    recon = G.synthesis(codes[:b])
    l_pix = (recon - reals).square().mean()
    loss = cfg.pixel_weight * l_pix
    stats = {"pixel": l_pix.item()}
    if perceptual is not None and cfg.perceptual_weight > 0:
        with torch.no_grad():
            target = perceptual(reals)
        l_vgg = (perceptual(recon) - target).square().mean()
        loss = loss + cfg.perceptual_weight * l_vgg
        stats["perceptual"] = l_vgg.item()
    if cfg.adversarial_weight > 0:
        l_adv = F.softplus(-D(recon)).mean()
        loss = loss + cfg.adversarial_weight * l_adv
        stats["adversarial"] = l_adv.item()
    if wp_gen is not None:
        l_lat = (codes[b:] - wp_gen).square().mean()
        loss = loss + cfg.latent_weight * l_lat
        stats["latent"] = l_lat.item()
    stats["loss_E"] = loss.item()
    return loss, recon.detach(), stats


def discriminator_loss(
    D: Discriminator, reals: torch.Tensor, fakes: torch.Tensor, r1_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Logistic D loss plus ``r1_weight · mean ‖∇ₓ D(x)‖²`` (0 skips R1) → (scalar, stats)."""
    fake_logits = D(fakes)
    if r1_weight > 0:
        penalty, real_logits = gan.r1_penalty(D, reals)
    else:
        penalty, real_logits = None, D(reals)
    loss = gan.d_logistic_loss(real_logits, fake_logits)
    stats = {
        "d_real": real_logits.detach().mean().item(),
        "d_fake": fake_logits.detach().mean().item(),
    }
    if penalty is not None:
        loss = loss + r1_weight * penalty.mean()
        stats["r1"] = penalty.detach().mean().item()
    stats["loss_D"] = loss.item()
    return loss, stats


def train_step(
    state: EncoderState,
    reals: torch.Tensor,
    cfg: EncoderTrainConfig,
    ctx: DistContext,
    perceptual: PerceptualNet | None,
) -> dict[str, float]:
    """One E update then one D update on this rank's ``reals [B, 3, R, R]`` (gradients averaged
    over ranks). ``step``/``nimg`` are not advanced here.

    Returns:
        Local statistics: ``loss_E``, ``pixel``, ``perceptual``, ``adversarial``, ``latent``
        (the enabled ones), ``loss_D``, ``d_real``, ``d_fake``, ``r1`` (on R1 steps), ``lr``.
    """
    lr = cfg.lr_at(state.nimg)
    set_lr([state.opt_E, state.opt_D], lr)

    state.D.requires_grad_(False)
    loss_E, fakes, stats = encoder_losses(state, reals, cfg, perceptual)
    state.opt_E.zero_grad(set_to_none=True)
    loss_E.backward()
    ctx.average_grads([p for p in state.E.parameters() if p.requires_grad])
    state.opt_E.step()

    state.D.requires_grad_(True)
    r1_step = cfg.r1_gamma and state.step % cfg.r1_interval == 0
    r1_weight = (cfg.r1_gamma or 0.0) / 2 * cfg.r1_interval if r1_step else 0.0
    loss_D, d_stats = discriminator_loss(state.D, reals, fakes, r1_weight)
    state.opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    ctx.average_grads(list(state.D.parameters()))
    state.opt_D.step()
    stats.update(d_stats)
    stats["lr"] = lr
    return stats


# ---------------------------------------------------------------------------------------------
# Checkpoints and export


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an encoder-run checkpoint (``weights_only=True``, CPU)."""
    return load_checkpoint_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "encoder")


def load_run_config(run_dir: str | Path) -> EncoderTrainConfig | None:
    """The config of an existing encoder run, or ``None`` if it has no checkpoint."""
    return stored_config(run_dir, load_checkpoint, EncoderTrainConfig)


def export_encoder(run_dir: str | Path) -> tuple[Encoder, Generator, dict[str, Any]]:
    """The trained encoder of a run, the generator it was trained against, and run info.

    Returns:
        ``(E, G, info)``: eval-mode CPU float32 networks; ``info`` has ``config`` (the
        resolved :class:`EncoderTrainConfig` dict), ``step``, ``nimg``, ``elapsed_sec`` and
        ``gan`` (path, step and kimg of the GAN checkpoint G came from).
    """
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT_FILE)
    G = frozen_generator(GeneratorConfig(**ckpt["generator_config"]), ckpt["G"])
    E = Encoder(EncoderConfig(**ckpt["encoder_config"]))
    E.load_state_dict({k: v.contiguous() for k, v in ckpt["E"].items()})
    info = {k: ckpt[k] for k in ("config", "step", "nimg", "elapsed_sec", "gan")}
    return E.eval(), G, info


def _sync_bn_stats(E: Encoder, ctx: DistContext) -> None:
    """Average BatchNorm running statistics over ranks (collective: all ranks call it)."""
    if ctx.world == 1:
        return
    for m in E.modules():
        if isinstance(m, nn.BatchNorm2d):
            ctx.all_reduce_mean_(m.running_mean)
            ctx.all_reduce_mean_(m.running_var)


def _payload(
    state: EncoderState, cfg: EncoderTrainConfig, rng: torch.Tensor, gan_info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": cfg.to_dict(),
        "encoder_config": state.E.config.to_dict(),
        "generator_config": state.G.config.to_dict(),
        "E": state.E.state_dict(),
        "D": state.D.state_dict(),
        "G": state.G.state_dict(),
        "opt_E": state.opt_E.state_dict(),
        "opt_D": state.opt_D.state_dict(),
        **counters_payload(state, rng),
        "gan": gan_info,
    }


# ---------------------------------------------------------------------------------------------
# Training loop


class _Window(StatWindow):
    """Sums of per-step statistics between two log lines."""

    KEYS = (
        "loss_E",
        "pixel",
        "perceptual",
        "adversarial",
        "latent",
        "loss_D",
        "d_real",
        "d_fake",
        "r1",
    )


@torch.no_grad()
def reconstruct(E: Encoder, G: Generator, images: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """``G(E(x))`` for ``images [N, 3, R, R]`` with E in eval mode (restores its mode)."""
    was_training = E.training
    E.eval()
    try:
        return torch.cat([G.synthesis(E(x)) for x in images.split(chunk)])
    finally:
        E.train(was_training)


def pair_grid(inputs: torch.Tensor, recons: torch.Tensor, pairs_per_row: int) -> np.ndarray:
    """uint8 grid ``[rows·R, 2·pairs_per_row·R, 3]`` of input | reconstruction pairs."""
    both = torch.stack([inputs, recons], dim=1).flatten(0, 1)
    return gan.images_to_grid(both, 2 * pairs_per_row)


def validation_images(cfg: EncoderTrainConfig, resolution: int) -> torch.Tensor:
    """``grid_size²`` validation renders ``[N, 3, R, R]`` (validation split of the data seed)."""
    assert cfg.data is not None and cfg.data_seed is not None
    images, _, _ = render_faces(
        cfg.data, validation_seed(cfg.data_seed), 0, cfg.grid_size**2, resolution
    )
    return to_float_images(images)


def train_encoder(
    cfg: EncoderTrainConfig,
    run_dir: str | Path,
    resume: bool = True,
    perceptual: PerceptualNet | None = None,
) -> dict[str, Any]:
    """Train (or resume) the domain-guided encoder into ``run_dir`` until ``cfg.total_kimg``.

    Resuming restores E, D, the frozen G (the copy stored in the run, so a GAN run that kept
    training does not change the target), optimizers, counters and RNG states, and continues
    the data stream, so an interrupted run ends where an uninterrupted one would (same world
    size). Non-runtime config differences raise ``ValueError``. SIGINT/SIGTERM save and stop.

    Args:
        cfg: run configuration (``None`` fields are resolved from the GAN run).
        run_dir: output directory.
        resume: continue from ``run_dir/checkpoint.pt`` if present.
        perceptual: the perceptual network to use (tests); ``None`` looks it up with
            :func:`find_perceptual_net` when ``cfg.perceptual`` asks for it.

    Returns:
        Summary dict: ``step``, ``nimg``, ``kimg``, ``stopped``, ``last`` (last log record),
        ``run_dir``, ``config`` (resolved) and ``state`` (:class:`EncoderState`).
    """
    run_dir = Path(run_dir)
    ctx = DistContext.from_env()
    try:
        return _train(cfg, run_dir, resume, perceptual, ctx)
    finally:
        ctx.close()


def _resolve_perceptual(
    cfg: EncoderTrainConfig, given: PerceptualNet | None
) -> PerceptualNet | None:
    if cfg.perceptual == "none" or cfg.perceptual_weight == 0:
        return None
    net = given if given is not None else find_perceptual_net("cpu")
    if net is None:
        raise RuntimeError(
            "this run uses the VGG perceptual term (perceptual: torchvision) but no torchvision "
            "VGG16 weights are available (idinvert.hub.vgg_weights); install them or start a "
            "run with --perceptual none"
        )
    return net.eval().requires_grad_(False)


def _from_checkpoint(
    cfg: EncoderTrainConfig, ckpt: dict[str, Any], where: Path
) -> tuple[EncoderTrainConfig, Generator, dict[str, Any], DiscriminatorConfig]:
    """Resume: the stored config (runtime fields from ``cfg``), its generator and D config.

    ``None``/``"auto"``/empty fields of ``cfg`` mean "as stored"; other non-runtime
    differences raise ``ValueError``.
    """
    stored = EncoderTrainConfig.from_dict(ckpt["config"])
    as_stored = {
        f.name: getattr(stored, f.name)
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) in (None, "auto") or (f.name == "gan_run" and not cfg.gan_run)
    }
    explicit = dataclasses.replace(cfg, **as_stored)
    if explicit.gan_run:
        explicit = dataclasses.replace(explicit, gan_run=str(Path(explicit.gan_run).resolve()))
    raise_if_incompatible(explicit.incompatible_with(stored), where)
    runtime = {k: getattr(cfg, k) for k in EncoderTrainConfig.RUNTIME_FIELDS}
    G = frozen_generator(GeneratorConfig(**ckpt["generator_config"]), ckpt["G"])
    d_cfg = gan.GanTrainConfig.from_dict(ckpt["gan"]["config"]).discriminator_config()
    return dataclasses.replace(stored, **runtime), G, dict(ckpt["gan"]), d_cfg


def _from_gan_run(
    cfg: EncoderTrainConfig, perceptual: PerceptualNet | None
) -> tuple[EncoderTrainConfig, Generator, dict[str, Any], DiscriminatorConfig]:
    """New run: resolve ``cfg`` against the GAN run; its EMA generator; GAN info (with the
    discriminator state under ``"D"``) and D config."""
    if not cfg.gan_run:
        raise ValueError("gan_run is required for a new encoder run (--gan RUN_DIR)")
    gan_cfg, gan_ckpt = load_gan_parts(cfg.gan_run)
    want_vgg = cfg.perceptual != "none" and cfg.perceptual_weight > 0
    have_vgg = perceptual is not None or (want_vgg and find_perceptual_net("cpu") is not None)
    cfg = cfg.resolved(gan_cfg, have_vgg)
    G = frozen_generator(gan_cfg.generator_config(), gan_ckpt["G_ema"])
    gan_info = {
        "run": cfg.gan_run,
        "step": int(gan_ckpt["step"]),
        "kimg": round(int(gan_ckpt["nimg"]) / 1000, 3),
        "config": gan_cfg.to_dict(),
        "D": gan_ckpt["D"],
    }
    return cfg, G, gan_info, gan_cfg.discriminator_config()


def _build_state(
    cfg: EncoderTrainConfig,
    G: Generator,
    d_cfg: DiscriminatorConfig,
    gan_info: dict[str, Any],
    ckpt: dict[str, Any] | None,
    device: torch.device | str = "cpu",
) -> EncoderState:
    """Networks (on ``device``) and optimizers, fresh (D from the GAN run) or restored from
    ``ckpt``."""
    E = build_encoder(cfg, G, warm_start=ckpt is None)
    D = Discriminator(d_cfg)
    if ckpt is None:
        D.load_state_dict(gan_info.pop("D"))
    for net in (E, D, G):  # before the optimizers: their restored states follow the params
        net.to(device)
    state = EncoderState(E, D, G, *make_optimizers(cfg, E, D))
    if ckpt is not None:
        E.load_state_dict(ckpt["E"])
        D.load_state_dict(ckpt["D"])
        state.opt_E.load_state_dict(ckpt["opt_E"])
        state.opt_D.load_state_dict(ckpt["opt_D"])
        restore_counters(state, ckpt)
    if cfg.channels_last:
        for net in (E, D, G):
            net.to(memory_format=torch.channels_last)
    E.train()
    D.train()
    return state


def _train(
    cfg: EncoderTrainConfig,
    run_dir: Path,
    resume: bool,
    perceptual: PerceptualNet | None,
    ctx: DistContext,
) -> dict[str, Any]:
    ctx.check_batch(cfg.batch_size)
    torch.set_num_threads(cfg.threads)
    device = gan.training_device(cfg.device, ctx)
    ckpt_path, ckpt = resume_checkpoint(run_dir, resume, load_checkpoint)
    if ckpt is not None:
        cfg, G, gan_info, d_cfg = _from_checkpoint(cfg, ckpt, ckpt_path)
    else:
        cfg, G, gan_info, d_cfg = _from_gan_run(cfg, perceptual)
    perceptual = _resolve_perceptual(cfg, perceptual)
    if perceptual is not None:
        perceptual.to(device)
    check_train_seed(int(cfg.data_seed or 0), "data_seed")
    state = _build_state(cfg, G, d_cfg, gan_info, ckpt, device)
    ctx.broadcast_([*state.E.parameters(), *state.E.buffers(), *state.D.parameters()])
    if ctx.is_main:
        prepare_run_dir(run_dir, cfg, fresh=ckpt is None)

    resolution = G.config.resolution
    total_steps = cfg.total_steps()
    dataset = gan.FaceBatches(
        str(cfg.data),
        int(cfg.data_seed or 0),
        resolution,
        cfg.batch_size // ctx.world,
        state.nimg,
        ctx.rank,
        ctx.world,
        num_steps=max(total_steps - state.step, 0),
        mirror=cfg.mirror,
    )
    batches = iter(gan.make_loader(dataset, cfg.num_workers, pin_memory=device.type == "cuda"))
    restore_rng(ckpt, ctx, cfg.seed, state.step)

    val = validation_images(cfg, resolution).to(device) if ctx.is_main else None
    loop = _Loop(state, cfg, ctx, run_dir, perceptual, gan_info, val)
    if ckpt is None:
        loop.sample()
    return loop.run(batches, total_steps)


class _Loop:
    """The iteration loop with logging, sample grids and checkpoints."""

    def __init__(
        self,
        state: EncoderState,
        cfg: EncoderTrainConfig,
        ctx: DistContext,
        run_dir: Path,
        perceptual: PerceptualNet | None,
        gan_info: dict[str, Any],
        val: torch.Tensor | None,
    ) -> None:
        self.state, self.cfg, self.ctx, self.run_dir = state, cfg, ctx, run_dir
        self.perceptual, self.gan_info, self.val = perceptual, gan_info, val
        self.val_mse: float | None = None
        self.window = _Window()

    def sample(self) -> None:
        """Sample grid + validation MSE (all ranks call: BN statistics are synchronised)."""
        _sync_bn_stats(self.state.E, self.ctx)
        if not self.ctx.is_main or self.val is None:
            return
        recon = reconstruct(self.state.E, self.state.G, self.val)
        self.val_mse = float((recon - self.val).square().mean())
        grid = pair_grid(self.val, recon, self.cfg.grid_size)
        gan.save_image(grid, self.run_dir / SAMPLES_DIR / f"grid_{self.state.step:06d}.png")

    def checkpoint(self) -> None:
        _sync_bn_stats(self.state.E, self.ctx)
        rng = self.ctx.gather_rng_states()
        if self.ctx.is_main:
            payload = _payload(self.state, self.cfg, rng, self.gan_info)
            save_checkpoint(self.run_dir / CHECKPOINT_FILE, payload)

    def run(self, batches: Iterator[torch.Tensor], total_steps: int) -> dict[str, Any]:
        state, cfg, ctx = self.state, self.cfg, self.ctx
        bar = progress_bar(total_steps, state.step, ctx.is_main and cfg.progress, desc="encoder")
        device = next(state.E.parameters()).device
        last: dict[str, Any] = {}
        last_ckpt = time.monotonic()
        t_start = time.perf_counter() - state.elapsed_sec
        stopped = False
        with StopFlag() as stop:
            while state.step < total_steps:
                reals = gan.uint8_to_float(next(batches).to(device, non_blocking=True))
                if cfg.channels_last:
                    reals = reals.contiguous(memory_format=torch.channels_last)
                stats = train_step(state, reals, cfg, ctx, self.perceptual)
                state.step += 1
                state.nimg += cfg.batch_size
                state.elapsed_sec = time.perf_counter() - t_start
                self.window.add(stats)
                bar.update(1)
                done = state.step >= total_steps
                due = time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60
                flags = ctx.all_reduce_max_(torch.tensor([float(stop.requested), float(due)]))
                stopping = bool(flags[0])
                if state.step % cfg.sample_every == 0 or done:
                    self.sample()
                if state.step % cfg.log_every == 0 or done or stopping:
                    last = self._log(bar, stats["lr"])
                if bool(flags[1]) or done or stopping:
                    self.checkpoint()
                    last_ckpt = time.monotonic()
                if stopping and not done:
                    stopped = True
                    break
        bar.close()
        return {**summary(state, stopped, last, self.run_dir), "config": cfg, "state": state}

    def _log(self, bar: Any, lr: float) -> dict[str, Any]:
        state, cfg = self.state, self.cfg
        means = self.window.means(self.ctx)
        timing = self.window.timing(cfg.batch_size)
        check_finite(means, ("loss_E", "loss_D"), state.step)
        record: dict[str, Any] = {
            "step": state.step,
            "kimg": round(state.nimg / 1000, 3),
            **{k: (round(v, 6) if v is not None else None) for k, v in means.items()},
            "lr": lr,
            "val_mse": None if self.val_mse is None else round(self.val_mse, 6),
            **timing,
            "time_sec": round(state.elapsed_sec, 1),
        }
        if self.ctx.is_main:
            append_log(self.run_dir, record)
            bar.set_postfix(
                kimg=f"{record['kimg']:.1f}",
                pix=f"{means['pixel']:.4f}",
                D=f"{means['loss_D']:.3f}",
                val=f"{self.val_mse or float('nan'):.4f}",
                refresh=False,
            )
        self.window.reset()
        return record
