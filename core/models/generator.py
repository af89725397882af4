"""The IDInvert StyleGAN generator: per-layer (W+) mapping, truncation and synthesis.

The module tree and parameter names match the official checkpoints
(``styleganinv_*_generator.pth``) so a converted state dict loads strictly; the dead ToRGB
layers of progressive growing and the fixed buffers (blur kernels, truncation coefficients)
are not stored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.derived import derived
from idinvert.core.models.fused_epilogue import fused_epilogue
from idinvert.core.models.layers import (
    LEAKY_SLOPE,
    DenseBlock,
    blur_kernel,
    fused_upsample_kernel,
    upsample_conv_kernel,
)
from idinvert.core.models.packed_conv import frozen_conv2d, frozen_conv_transpose2d

FusedScale = Literal["auto"] | bool


def _is_power_of_two(value: int) -> bool:
    return value >= 1 and (value & (value - 1)) == 0


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a :class:`Generator`; every field is stored in a model's ``config.json``.

    Attributes:
        resolution: output side length R, a power of two in 8..1024.
        z_dim: dimension of the input latent z.
        w_dim: dimension D of each per-layer code w.
        mapping_layers: number of dense layers in the mapping network.
        mapping_hidden_dim: width of the hidden mapping layers (``fmaps_max`` officially);
            ``None`` means ``fmaps_max``.
        mapping_lr_mul: learning-rate multiplier of the mapping layers (0.01).
        fmaps_base: channel numerator; channels at resolution r are
            ``min(fmaps_base // r, fmaps_max)``.
        fmaps_max: channel cap.
        fused_scale: ``"auto"`` (fused up-convolution at resolutions >= 128), ``True``
            (everywhere) or ``False`` (never).
        truncation_psi: truncation strength ψ for the z → image path (1.0 disables).
        truncation_layers: number of leading layers that are truncated (all L if larger).
        randomize_noise: draw fresh per-pixel noise each call instead of the fixed buffers.
        final_tanh: squash the output with tanh (True for all released IDInvert models).
        image_channels: output channels (3, RGB).
    """

    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_hidden_dim: int | None = None
    mapping_lr_mul: float = 0.01
    fmaps_base: int = 16384
    fmaps_max: int = 512
    fused_scale: FusedScale = "auto"
    truncation_psi: float = 0.7
    truncation_layers: int = 8
    randomize_noise: bool = False
    final_tanh: bool = True
    image_channels: int = 3

    def __post_init__(self) -> None:
        if not _is_power_of_two(self.resolution) or not 8 <= self.resolution <= 1024:
            raise ValueError(f"resolution must be a power of two in 8..1024, got {self.resolution}")
        for name in ("z_dim", "w_dim", "mapping_layers", "fmaps_base", "fmaps_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.fused_scale not in ("auto", True, False):
            raise ValueError(f"fused_scale must be 'auto', true or false, got {self.fused_scale!r}")
        if self.truncation_layers < 0:
            raise ValueError(f"truncation_layers must be >= 0, got {self.truncation_layers}")

    @property
    def num_layers(self) -> int:
        """Number L of W+ codes: two per resolution from 4 to R."""
        return 2 * (int(math.log2(self.resolution)) - 1)

    @property
    def hidden_dim(self) -> int:
        """Width of the hidden mapping layers."""
        return self.mapping_hidden_dim if self.mapping_hidden_dim is not None else self.fmaps_max

    def channels(self, res: int) -> int:
        """Feature channels at resolution ``res``."""
        return min(self.fmaps_base // res, self.fmaps_max)

    def is_fused(self, res: int) -> bool:
        """Whether the up-convolution into resolution ``res`` uses the fused kernel."""
        return res >= 128 if self.fused_scale == "auto" else bool(self.fused_scale)

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


class Mapping(nn.Module):
    """z ``[B, z_dim]`` → per-layer codes, flattened ``[B, L * D]`` (official ``repeat_w=False``).

    PixelNorm of z, then ``mapping_layers`` dense layers with LeakyReLU (also after the last).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.z_dim] + [config.hidden_dim] * (config.mapping_layers - 1)
        widths.append(config.w_dim * config.num_layers)
        for i in range(config.mapping_layers):
            block = DenseBlock(widths[i], widths[i + 1], lr_mul=config.mapping_lr_mul)
            self.add_module(f"dense{i}", block)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, z_dim]`` (any scale) → ``w [B, L * D]``."""
        if z.ndim != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must be [B, {self.config.z_dim}], got {list(z.shape)}")
        x = z / torch.sqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
        for i in range(self.config.mapping_layers):
            x = getattr(self, f"dense{i}")(x)
        return x


class Truncation(nn.Module):
    """``w' = w_avg + (w - w_avg) * coef[l]`` with ``coef = ψ`` on the first layers, else 1.

    Buffer ``w_avg [D]`` (persistent); the coefficient vector ``[1, L, 1]`` is rebuilt from the
    config (the official loader also overwrites the stored one).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("w_avg", torch.zeros(config.w_dim))
        self.register_buffer(
            "truncation", self.coefficients(config.truncation_psi), persistent=False
        )

    def coefficients(self, psi: float, layers: int | None = None) -> torch.Tensor:
        """Per-layer coefficients ``[1, L, 1]``: ψ for the first ``layers`` layers, else 1."""
        n = self.config.truncation_layers if layers is None else layers
        coef = torch.ones(1, self.config.num_layers, 1, device="cpu")  # a constant, never meta
        coef[:, :n] = psi
        return coef

    def forward(
        self, w: torch.Tensor, psi: float | None = None, layers: int | None = None
    ) -> torch.Tensor:
        """``w [B, L * D]`` or ``[B, L, D]`` → truncated ``[B, L, D]``.

        ``psi``/``layers`` override the configured truncation for this call.
        """
        cfg = self.config
        if w.ndim == 2:
            w = w.view(w.shape[0], cfg.num_layers, cfg.w_dim)
        if w.shape[1:] != (cfg.num_layers, cfg.w_dim):
            raise ValueError(f"w must be [B, {cfg.num_layers}, {cfg.w_dim}], got {list(w.shape)}")
        if psi == 1.0:
            return w
        coef = (
            self.truncation
            if psi is None and layers is None
            else self.coefficients(cfg.truncation_psi if psi is None else psi, layers).to(w)
        )
        return self.w_avg + (w - self.w_avg) * coef


class NoiseInput(nn.Module):
    """Adds per-pixel noise scaled per channel: ``x + noise * weight``.

    Buffers/params: ``noise [1, 1, res, res]`` (fixed noise), ``weight [C]``.
    """

    def __init__(self, channels: int, resolution: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.register_buffer("noise", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, randomize: bool = False) -> torch.Tensor:
        noise = torch.randn_like(x[:, :1]) if randomize else self.noise
        return x + noise * self.weight.view(1, -1, 1, 1)


class StyleModulation(nn.Module):
    """Adaptive instance-norm affine: ``style = dense(w)`` ``[B, 2C]``; ``x * (s0 + 1) + s1``."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.channels = channels
        self.dense = DenseBlock(w_dim, channels * 2, gain=1.0, lr_mul=1.0, activate=False)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """``w [B, D]`` → style ``[B, 2C]`` (first C = scale − 1, last C = shift)."""
        return self.dense(w)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.style(w).view(-1, 2, self.channels, 1, 1)
        return torch.addcmul(s[:, 1], x, s[:, 0] + 1.0)


class Epilogue(nn.Module):
    """noise → bias → LeakyReLU → instance norm → style modulation (the official order).

    Computes in the dtype of its own parameters (inputs are cast to it): a bfloat16 copy of
    the generator keeps its epilogues in float32 (``keep_float32``), where the mean
    subtraction and normalisation would otherwise lose most of bfloat16's 8 mantissa bits.
    """

    keep_float32 = True

    def __init__(self, channels: int, resolution: int, w_dim: int) -> None:
        super().__init__()
        self.apply_noise = NoiseInput(channels, resolution)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.style_mod = StyleModulation(channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, randomize_noise: bool) -> torch.Tensor:
        """``x [B, C, r, r]``, ``w [B, D]`` → ``[B, C, r, r]`` (in this module's dtype)."""
        dtype = self.bias.dtype
        w = w.to(dtype)
        bias = self.bias.view(1, -1, 1, 1)
        if randomize_noise:
            x = self.apply_noise(x.to(dtype), True) + bias
        else:  # noise and bias summed first (and kept while frozen): one pass over x, not two
            noise = self.apply_noise
            sources = [noise.noise, noise.weight, self.bias]
            layout = _layout(x)
            noise_bias = derived(
                self,
                f"noise_bias.{layout}",
                lambda: (noise.noise * noise.weight.view(1, -1, 1, 1) + bias).contiguous(
                    memory_format=layout
                ),
                sources,
            )
            if layout == torch.channels_last and not noise_bias.requires_grad:
                # a frozen bfloat16 copy (inversion): the whole tail as one fused function,
                # straight from the bfloat16 convolution output (no separate cast pass)
                return fused_epilogue(x, noise_bias, self.style_mod.style(w))
            x = x.to(dtype) + noise_bias
        x = F.leaky_relu(x, LEAKY_SLOPE, inplace=True)  # x is this function's own sum
        # The official x − mean, then x / sqrt(mean(x²) + 1e-8), is an instance norm with the
        # biased variance; the fused kernel is ≈ 2× faster forward and backward (≤ 4e-6 apart).
        return self.style_mod(instance_norm(x), w)


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample, per-channel normalisation of ``x [B, C, H, W]`` (biased variance).

    Channels-last tensors (the bfloat16 copies' layout) go through ``F.group_norm`` with one
    group per channel, the same function: torch 2.14's ``F.instance_norm`` backward returns a
    gradient unrelated to the true one for a channels-last batch of one (cosine ≈ 0 with the
    correct gradient; batches ≥ 2 are right), which had made bf16 inversions of single images
    stall. Contiguous tensors keep ``F.instance_norm`` (the fp32 path's exact numbers).
    """
    if x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return F.group_norm(x, x.shape[1], eps=eps)
    return F.instance_norm(x, eps=eps)


def _layout(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` if ``x [B, C, H, W]`` is stored channels-last, else contiguous."""
    if x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class ConstBlock(nn.Module):
    """Layer 0: a learned constant ``const [1, C, 4, 4]`` followed by the epilogue."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.epilogue = Epilogue(channels, 4, w_dim)

    def forward(self, w: torch.Tensor, randomize_noise: bool) -> torch.Tensor:
        x = self.const.expand(w.shape[0], -1, -1, -1)
        return self.epilogue(x, w, randomize_noise)


class ConvBlock(nn.Module):
    """3×3 convolution (optionally preceded by ×2 upsampling and followed by a blur) + epilogue.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        resolution: output resolution.
        w_dim: code dimension D.
        upsample: double the resolution first (nearest neighbour, or fused transposed conv).
        fused: use the fused up-convolution. Its kernel is the parameter ``weight`` of the
            block itself, in TF layout ``[3, 3, C_in, C_out]`` (the official checkpoint key
            ``synthesis.layer{i}.weight``); otherwise the kernel is ``conv.weight``,
            ``[C_out, C_in, 3, 3]``. :attr:`kernel` returns either.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resolution: int,
        w_dim: int,
        upsample: bool = False,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if fused and not upsample:
            raise ValueError("fused=True requires upsample=True")
        self.upsample = upsample
        self.fused = fused
        self.scale = math.sqrt(2.0) / math.sqrt(in_channels * 9)
        if fused:
            self.weight = nn.Parameter(torch.randn(3, 3, in_channels, out_channels))
        else:
            self.conv = nn.Module()
            self.conv.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        if upsample:
            self.blur = nn.Module()
            self.blur.register_buffer("kernel", blur_kernel(out_channels), persistent=False)
        self.epilogue = Epilogue(out_channels, resolution, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, randomize_noise: bool) -> torch.Tensor:
        """``x [B, C_in, r, r]`` (``r/2`` when upsampling) → ``[B, C_out, r, r]``."""
        kernel = self.kernel
        x = x.to(kernel.dtype)
        if self.upsample:
            # fused: the official up-convolution; else nearest ×2 + conv(·, w) · scale, as one
            # transposed convolution. Kernels in the activations' layout (channels-last copies)
            make = fused_upsample_kernel if self.fused else upsample_conv_kernel
            layout = _layout(x)
            k = derived(
                self,
                "kernel",
                lambda: make(kernel, self.scale).contiguous(memory_format=layout),
                [kernel],
            )
            x = frozen_conv_transpose2d(self, "conv", x, k, stride=2, padding=1)
        else:  # the official conv(x, w) · scale, with the scale folded into the small weight
            scaled = derived(self, "kernel", lambda: kernel * self.scale, [kernel])
            x = frozen_conv2d(self, "conv", x, scaled, padding=1)
        if self.upsample:
            x = F.conv2d(x, self.blur.kernel, padding=1, groups=x.shape[1])
        return self.epilogue(x, w, randomize_noise)

    @property
    def kernel(self) -> nn.Parameter:
        """The 3×3 kernel parameter: ``weight`` ``[3, 3, C_in, C_out]`` when fused, else
        ``conv.weight`` ``[C_out, C_in, 3, 3]``."""
        return self.weight if self.fused else self.conv.weight

    def extra_repr(self) -> str:
        return f"upsample={self.upsample}, fused={self.fused}"


class ToRGB(nn.Module):
    """1×1 convolution to RGB: ``conv(x) / sqrt(C) + bias``; keys ``conv.weight``, ``bias``.

    Computes in its own dtype (float32 in a bfloat16 copy, see :class:`Epilogue`).
    """

    keep_float32 = True

    def __init__(self, in_channels: int, image_channels: int = 3) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(in_channels)
        self.conv = nn.Module()
        self.conv.weight = nn.Parameter(torch.randn(image_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight
        x = x.to(weight.dtype)
        scaled = derived(self, "weight", lambda: weight * self.scale, [weight])
        return frozen_conv2d(self, "conv", x, scaled, self.bias)


class Synthesis(nn.Module):
    """W+ ``[B, L, D]`` → image ``[B, C, R, R]`` in (−1, 1) with tanh.

    Layer ``i`` consumes ``wp[:, i]``. Only the final-resolution ToRGB (``output{log2(R)-2}``)
    exists; progressive growing's lower-resolution ToRGBs never contribute at ``lod = 0``.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.layer0 = ConstBlock(config.channels(4), config.w_dim)
        self.layer1 = ConvBlock(config.channels(4), config.channels(4), 4, config.w_dim)
        res_log2 = int(math.log2(config.resolution))
        for i, res_exp in enumerate(range(3, res_log2 + 1)):
            res = 2**res_exp
            cin, cout = config.channels(res // 2), config.channels(res)
            up = ConvBlock(cin, cout, res, config.w_dim, upsample=True, fused=config.is_fused(res))
            self.add_module(f"layer{2 * i + 2}", up)
            self.add_module(f"layer{2 * i + 3}", ConvBlock(cout, cout, res, config.w_dim))
        self.output_name = f"output{res_log2 - 2}"
        self.add_module(self.output_name, ToRGB(config.channels(config.resolution)))

    def layers(self) -> list[nn.Module]:
        """The L style-consuming blocks in order."""
        return [getattr(self, f"layer{i}") for i in range(self.config.num_layers)]

    def styles(self, wp: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer style vectors ``[B, 2 C_l]`` for codes ``wp [B, L, D]``."""
        self._check_wp(wp)
        return [layer.epilogue.style_mod.style(wp[:, i]) for i, layer in enumerate(self.layers())]

    def forward(self, wp: torch.Tensor, randomize_noise: bool | None = None) -> torch.Tensor:
        """``wp [B, L, D]`` → image ``[B, C, R, R]`` in (−1, 1) (raw, not clipped)."""
        self._check_wp(wp)
        rand = self.config.randomize_noise if randomize_noise is None else randomize_noise
        layers = self.layers()
        x = layers[0](wp[:, 0], rand)
        for i in range(1, len(layers)):
            x = layers[i](x, wp[:, i], rand)
        x = getattr(self, self.output_name)(x)
        return torch.tanh(x) if self.config.final_tanh else x

    def _check_wp(self, wp: torch.Tensor) -> None:
        expected = (self.config.num_layers, self.config.w_dim)
        if wp.ndim != 3 or tuple(wp.shape[1:]) != expected:
            raise ValueError(
                f"W+ codes must be [N, {expected[0]}, {expected[1]}], got {list(wp.shape)}"
            )


class Generator(nn.Module):
    """The full generator ``G(z) = synthesis(truncation(mapping(z)))``.

    Args:
        config: architecture; see :class:`GeneratorConfig`.

    Attributes:
        mapping: :class:`Mapping`, ``z [B, z_dim]`` → ``w [B, L * D]``.
        truncation: :class:`Truncation`, → ``wp [B, L, D]``.
        synthesis: :class:`Synthesis`, ``wp`` → image ``[B, 3, R, R]`` in (−1, 1).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.mapping = Mapping(config)
        self.truncation = Truncation(config)
        self.synthesis = Synthesis(config)

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def z_to_wp(
        self, z: torch.Tensor, psi: float | None = None, truncation_layers: int | None = None
    ) -> torch.Tensor:
        """``z [B, z_dim]`` → truncated W+ ``[B, L, D]`` (``psi=1`` disables truncation)."""
        return self.truncation(self.mapping(z), psi, truncation_layers)

    def forward(self, z: torch.Tensor, psi: float | None = None) -> torch.Tensor:
        """``z [B, z_dim]`` → image ``[B, 3, R, R]`` in (−1, 1)."""
        return self.synthesis(self.z_to_wp(z, psi))

    def extra_repr(self) -> str:
        c = self.config
        return f"resolution={c.resolution}, L={c.num_layers}, z_dim={c.z_dim}, w_dim={c.w_dim}"
