"""In-domain GAN inversion: encoder initialisation + domain-regularised optimisation.

The objective per image x (official defaults in :class:`InversionSettings`)::

    z0 = E(x);  minimise over z ∈ W+:
    ‖x − G(z)‖²  +  λ_vgg ‖F(x) − F(G(z))‖²  +  λ_dom ‖z − E(G(z))‖²      (means, not sums)

optimised with Adam (lr 0.01, 100 steps; :class:`~idinvert.core.adam.CodeAdam`: the same
arithmetic as ``torch.optim.Adam`` without its import cost). With a ``mask`` (semantic
diffusion) the pixel and perceptual terms only see the masked region (``x · mask``) and the
domain term is usually off.

Differences from the official loop that do not change the numbers: the target's perceptual
features are computed once, gradients flow only into the codes (never into network weights),
N images are optimised together with the sum of their per-sample losses (Adam is
elementwise, so each sample follows exactly its batch-1 trajectory), and on the CPU the
allocator keeps freed activation memory for reuse (:mod:`idinvert.core.runtime`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from idinvert.core.adam import CodeAdam
from idinvert.core.compiled import compiled, mark_step
from idinvert.core.losses import domain_loss, feature_loss, pixel_loss
from idinvert.core.modeldir import ModelBundle
from idinvert.core.precision import precision_dtype, warn_if_slow
from idinvert.core.runtime import tune_cpu_allocator

LOSS_NAMES = ("pixel", "perceptual", "domain", "total")


@dataclass(frozen=True)
class InversionSettings:
    """Hyper-parameters of the optimisation (defaults = the official ``invert.py``).

    Attributes:
        steps: Adam steps; 0 means encoder only.
        learning_rate: Adam learning rate (β = (0.9, 0.999), ε = 1e-8, no decay).
        pixel_weight: weight of the pixel MSE.
        perceptual_weight: weight of the VGG conv4_3 feature MSE (0 skips the VGG).
        domain_weight: weight of the encoder-consistency term (0 skips it).
        precision: ``"fp32"`` (default; the official numbers) or ``"bf16"`` (networks in
            bfloat16, codes/losses/Adam in float32; faster on CPUs with AMX/AVX-512 BF16 and
            recent GPUs; see :mod:`idinvert.core.precision`).
    """

    steps: int = 100
    learning_rate: float = 0.01
    pixel_weight: float = 1.0
    perceptual_weight: float = 5e-5
    domain_weight: float = 2.0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        precision_dtype(self.precision)
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("pixel_weight", "perceptual_weight", "domain_weight"):
            value = getattr(self, name)
            if not (value >= 0 and np.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def with_(self, **changes: float | int) -> InversionSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class StepInfo:
    """What a progress callback receives after each optimisation step.

    Attributes:
        step: 1-based index of the step just taken.
        total: number of steps of this run.
        losses: name → ``[N]`` per-sample losses evaluated *before* this step's update.
        offset: index of the first image of this chunk within the whole batch.
    """

    step: int
    total: int
    losses: dict[str, np.ndarray]
    offset: int = 0


StepCallback = Callable[[StepInfo], None]


@dataclass
class InversionResult:
    """Output of :func:`invert`.

    Attributes:
        codes: final W+ codes ``[N, L, D]`` (after the last Adam step), float32, CPU.
        init_codes: encoder codes ``E(x)`` ``[N, L, D]``.
        history: loss name → ``[steps, N]``; row k is evaluated at the code before update
            k + 1 (row 0 at the encoder initialisation), like the official log.
        seconds: wall time of the whole call.
    """

    codes: torch.Tensor
    init_codes: torch.Tensor
    history: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _check_images(bundle: ModelBundle, images: torch.Tensor, name: str = "images") -> None:
    r = bundle.resolution
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, r, r):
        raise ValueError(f"{name} must be [N, 3, {r}, {r}] in [-1, 1], got {list(images.shape)}")


@torch.no_grad()
def encode(bundle: ModelBundle, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Encoder-only inversion: ``images [N, 3, R, R]`` in [−1, 1] → codes ``[N, L, D]``."""
    _check_images(bundle, images)
    device = bundle.device
    chunks = [
        bundle.encoder(images[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(chunks)


@torch.no_grad()
def synthesize(bundle: ModelBundle, codes: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """W+ ``codes [N, L, D]`` → images ``[N, 3, R, R]`` in (−1, 1), on the CPU."""
    device = bundle.device
    chunks = [
        bundle.generator.synthesis(codes[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, codes.shape[0], batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, 3, bundle.resolution, bundle.resolution)


def _optimize_chunk(
    bundle: ModelBundle,
    target: torch.Tensor,
    init: torch.Tensor,
    settings: InversionSettings,
    mask: torch.Tensor | None,
    callback: StepCallback | None,
    offset: int,
    compile_step: bool = False,
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Optimise one chunk on the bundle's device; returns codes ``[n, L, D]`` and history.

    ``target [n, 3, R, R]``, ``init [n, L, D]`` and ``mask`` are in the bundle's dtype; with
    ``settings.precision`` "bf16" the networks run on bfloat16 copies whose modules cast their
    inputs to their own dtype (the generator's epilogues and ToRGB, the first layers of the
    encoder and the VGG and the encoder's dense layer stay float32, see
    :func:`idinvert.core.precision.lowered_copy`), and every network output is cast back to
    the bundle's dtype before it enters a loss.
    """
    run_dtype = precision_dtype(settings.precision)
    nets = bundle if settings.precision == "fp32" else bundle.lowered(run_dtype)
    out_dtype = target.dtype

    def run(net: torch.nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        assert net is not None
        return net(x) if nets is bundle else net(x).to(out_dtype)

    G, E, F = nets.generator.synthesis, nets.encoder, nets.perceptual
    use_feat = settings.perceptual_weight > 0
    use_dom = settings.domain_weight > 0
    if use_feat and F is None:
        raise ValueError(
            "this model has no perceptual network: pass perceptual_weight=0 "
            "(--perceptual-weight 0) or add one (idinvert convert --perceptual vgg16.pth)"
        )
    masked_target = target * mask if mask is not None else target
    with torch.no_grad():
        target_features = run(F, masked_target) if use_feat else None
    zero = torch.zeros(target.shape[0], device=target.device)

    def terms(
        z: torch.Tensor, target: torch.Tensor, target_features: torch.Tensor | None
    ) -> torch.Tensor:
        """The objective's terms at codes ``z`` → ``[4, n]``: pixel, perceptual, domain, total."""
        recon = run(G, z)
        l_pix = pixel_loss(target, recon, mask)
        total = settings.pixel_weight * l_pix
        l_feat = l_dom = zero
        if target_features is not None:
            recon_in = recon * mask if mask is not None else recon
            l_feat = feature_loss(target_features, run(F, recon_in))
            total = total + settings.perceptual_weight * l_feat
        if use_dom:
            l_dom = domain_loss(z, run(E, recon))
            total = total + settings.domain_weight * l_dom
        return torch.stack([l_pix, l_feat, l_dom, total])

    device = target.device
    if compile_step:
        terms = compiled(terms, device)
    z = init.detach().clone().requires_grad_(True)
    optimizer = CodeAdam(z, lr=settings.learning_rate)
    rows: list[torch.Tensor] = []
    for step in range(settings.steps):
        if compile_step:
            mark_step(device)
        values = terms(z, target, target_features)
        optimizer.zero_grad()
        values[3].sum().backward()
        optimizer.step()
        # one transfer per step only when someone watches; else one at the end (no GPU sync)
        # (a copy: a CUDA-graph replay reuses its output memory)
        row = values.detach().float().clone()
        rows.append(row if callback is None else row.cpu())
        if callback is not None:
            numbers = rows[-1].numpy()
            losses = {name: numbers[i] for i, name in enumerate(LOSS_NAMES)}
            callback(StepInfo(step + 1, settings.steps, losses, offset))
    table = torch.stack(rows).cpu().numpy()  # [steps, 4, n]; invert() runs >= 1 step here
    history = {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(LOSS_NAMES)}
    return z.detach(), history


@torch.no_grad()
def objective(
    bundle: ModelBundle,
    images: torch.Tensor,
    codes: torch.Tensor,
    settings: InversionSettings | None = None,
) -> torch.Tensor:
    """The unmasked objective of :func:`invert` at ``codes`` ``[N, L, D]`` for ``images``
    ``[N, 3, R, R]`` in [−1, 1], evaluated in the bundle's own dtype (float32 for every
    precision) → ``[N]`` on the CPU. Compares where different runs ended up."""
    s = settings or InversionSettings()
    device = bundle.device
    x, z = images.to(device), codes.to(device)
    recon = bundle.generator.synthesis(z)
    total = s.pixel_weight * pixel_loss(x, recon)
    if s.perceptual_weight > 0:
        if bundle.perceptual is None:
            raise ValueError("this model has no perceptual network: pass perceptual_weight=0")
        feats = feature_loss(bundle.perceptual(x), bundle.perceptual(recon))
        total = total + s.perceptual_weight * feats
    if s.domain_weight > 0:
        total = total + s.domain_weight * domain_loss(z, bundle.encoder(recon))
    return total.float().cpu()


def invert(
    bundle: ModelBundle,
    images: torch.Tensor,
    settings: InversionSettings | None = None,
    *,
    mask: torch.Tensor | None = None,
    init_codes: torch.Tensor | None = None,
    batch_size: int | None = None,
    callback: StepCallback | None = None,
    seed: int | None = None,
    compile_step: bool = False,
) -> InversionResult:
    """Invert ``images`` into W+ codes of ``bundle``'s generator.

    Args:
        bundle: the model (networks frozen, on their device).
        images: ``[N, 3, R, R]`` in [−1, 1], RGB (any device; moved to the model's).
        settings: objective and optimiser settings; ``None`` = official defaults.
        mask: optional ``[1 or N, 1 or 3, R, R]`` in {0, 1}: only masked pixels count
            (semantic diffusion); the perceptual net then sees ``x · mask``.
        init_codes: optional start codes ``[N, L, D]`` instead of ``E(images)``.
        batch_size: optimise at most this many images at once (``None``: all together).
        callback: called after every step with a :class:`StepInfo`.
        seed: seeds torch's RNG for this call (only randomised noise, if enabled, uses it).
        compile_step: run the step through ``torch.compile`` (CUDA graphs on CUDA; see
            :mod:`idinvert.core.compiled`): same objective, a one-off compilation cost.

    Returns:
        :class:`InversionResult` with codes on the CPU.
    """
    settings = settings or InversionSettings()
    _check_images(bundle, images)
    n = images.shape[0]
    if mask is not None and (mask.ndim != 4 or mask.shape[-2:] != images.shape[-2:]):
        raise ValueError(f"mask must be [1|N, 1|3, R, R], got {list(mask.shape)}")
    if init_codes is not None and tuple(init_codes.shape) != (n, *bundle.code_shape):
        raise ValueError(
            f"init_codes must be [{n}, {bundle.num_layers}, {bundle.w_dim}], "
            f"got {list(init_codes.shape)}"
        )
    start = time.perf_counter()
    device = bundle.device
    if device.type == "cpu":
        tune_cpu_allocator()
    if settings.steps > 0:
        warn_if_slow(device, precision_dtype(settings.precision))
    dtype = next(bundle.generator.parameters()).dtype
    bs = batch_size or max(n, 1)
    codes, inits = [], []
    histories: list[dict[str, np.ndarray]] = []
    with _seeded(seed):
        for lo in range(0, n, bs):
            x = images[lo : lo + bs].to(device, dtype)
            m = None
            if mask is not None:
                m = mask if mask.shape[0] == 1 else mask[lo : lo + bs]
                m = m.to(device, dtype)
            with torch.no_grad():
                init = (
                    init_codes[lo : lo + bs].to(device, dtype)
                    if init_codes is not None
                    else bundle.encoder(x)
                )
            inits.append(init.float().cpu())
            if settings.steps == 0:
                codes.append(init.float().cpu())
                histories.append({k: np.zeros((0, x.shape[0]), np.float32) for k in LOSS_NAMES})
                continue
            z, hist = _optimize_chunk(bundle, x, init, settings, m, callback, lo, compile_step)
            codes.append(z.float().cpu())
            histories.append(hist)
    history = {k: np.concatenate([h[k] for h in histories], axis=1) for k in LOSS_NAMES}
    return InversionResult(torch.cat(codes), torch.cat(inits), history, time.perf_counter() - start)
