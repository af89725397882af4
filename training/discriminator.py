"""A StyleGAN-style residual discriminator with equalized learning rate.

Image ``[B, C, R, R]`` in [−1, 1] → realness logit ``[B]``.

Architecture (StyleGAN2 "resnet" D, in the StyleGAN1 weight convention of
:mod:`idinvert.core.models.layers`: weights stored unscaled, ~N(0, 1), multiplied at run time by
``gain / sqrt(fan_in)``):

* ``from_rgb``: 1×1 conv ``C_img → C(R)`` + LeakyReLU(0.2).
* ``block{r}`` for r = R, R/2, …, 8 (:class:`DBlock`): main path conv3×3 ``C(r) → C(r)`` →
  low-pass downsample → conv3×3 ``C(r) → C(r/2)``; shortcut downsample → 1×1 conv (linear,
  no bias); output ``(main + shortcut) / √2`` at ``r/2``.
* ``epilogue`` at 4×4 (:class:`DEpilogue`): minibatch standard deviation (+1 channel) →
  conv3×3 → flatten → dense ``16·C(4) → C(4)`` → dense ``C(4) → 1``.

The downsampling filter is ``[1, 3, 3, 1]`` (= the generator's ``[1, 2, 1]`` blur followed by a
2×2 box), applied as one depthwise stride-2 convolution. Channels per resolution follow the
generator's rule ``C(r) = min(fmaps_base // r, fmaps_max)``.

The network is also used by encoder training (the IDInvert encoder objective keeps training D).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.layers import LEAKY_SLOPE, DenseBlock

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a :class:`Discriminator`.

    Attributes:
        resolution: input side length R, a power of two in 8..1024.
        fmaps_base: channel numerator; ``C(r) = min(fmaps_base // r, fmaps_max)``.
        fmaps_max: channel cap.
        image_channels: input channels (3, RGB).
        mbstd_group: minibatch-stddev group size (the largest divisor of the batch ≤ this is
            used; 1 disables the statistic's cross-sample effect).
        mbstd_features: number of stddev feature maps appended at 4×4.
    """

    resolution: int = 64
    fmaps_base: int = 4096
    fmaps_max: int = 256
    image_channels: int = 3
    mbstd_group: int = 4
    mbstd_features: int = 1

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in 8..1024, got {r}")
        for name in ("fmaps_base", "fmaps_max", "image_channels", "mbstd_group"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.mbstd_features < 0:
            raise ValueError(f"mbstd_features must be >= 0, got {self.mbstd_features}")

    def channels(self, res: int) -> int:
        """Feature channels at resolution ``res``."""
        return max(1, min(self.fmaps_base // res, self.fmaps_max))

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


def downsample_kernel(channels: int) -> torch.Tensor:
    """Depthwise ``[1, 3, 3, 1]^T [1, 3, 3, 1] / 64`` kernel, shape ``[channels, 1, 4, 4]``."""
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).expand(channels, 1, 4, 4).contiguous()


class Downsample(nn.Module):
    """Anti-aliased ×½ downsampling: ``[B, C, r, r]`` → ``[B, C, r/2, r/2]`` (r even).

    A depthwise stride-2 4×4 convolution with the ``[1, 3, 3, 1]`` filter (padding 1), i.e.
    the ``[1, 2, 1]`` blur followed by 2×2 average pooling, in one op.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("kernel", downsample_kernel(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, stride=2, padding=1, groups=x.shape[1])


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate: ``conv(x, W * gain / sqrt(C_in k²)) + b``.

    Keys: ``weight [C_out, C_in, k, k]`` (stored ~N(0, 1)), ``bias [C_out]`` (optional, 0).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd square kernel size; "same" padding.
        bias: add a learned bias.
        activate: apply LeakyReLU(0.2) after the bias (then the default gain is √2).
        gain: weight gain; ``None`` means √2 when ``activate`` else 1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activate: bool = True,
        gain: float | None = None,
    ) -> None:
        super().__init__()
        gain = (SQRT2 if activate else 1.0) if gain is None else gain
        self.activate = activate
        self.padding = kernel_size // 2
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C_in, H, W]`` → ``[B, C_out, H, W]``."""
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.activate else x

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight.shape
        return f"{c_in}, {c_out}, k={k}, bias={self.bias is not None}, activate={self.activate}"


class DBlock(nn.Module):
    """Residual downsampling block: ``[B, C_in, r, r]`` → ``[B, C_out, r/2, r/2]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.down = Downsample(in_channels)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.down(self.conv0(x)))
        s = self.skip(self.down(x))
        return (y + s) * (1.0 / SQRT2)


def minibatch_stddev(x: torch.Tensor, group_size: int, num_features: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation as extra feature maps.

    Samples are split into groups of ``g`` = the largest divisor of ``B`` that is
    ``<= group_size`` (sample ``n`` is in group ``n % (B / g)``); for each group the stddev
    over its members is averaged over channels (in ``num_features`` channel chunks) and pixels.

    Args:
        x: ``[B, C, H, W]`` features; ``C`` divisible by ``num_features``.
        group_size: maximum group size.
        num_features: number of stddev maps.

    Returns:
        ``[B, C + num_features, H, W]``.
    """
    if num_features == 0:
        return x
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:
        g -= 1
    f = num_features
    y = x.reshape(g, -1, f, c // f, h, w)  # [G, M, F, c, H, W]
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W]
    y = y.mean(dim=(2, 3, 4))  # [M, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [B, F, H, W]
    return torch.cat([x, y], dim=1)


class DEpilogue(nn.Module):
    """4×4 head: ``[B, C, 4, 4]`` → logits ``[B]`` (mbstd → conv → dense → dense)."""

    def __init__(self, channels: int, mbstd_group: int, mbstd_features: int) -> None:
        super().__init__()
        if mbstd_features and channels % mbstd_features:
            raise ValueError("channels at 4x4 must be divisible by mbstd_features")
        self.mbstd_group = mbstd_group
        self.mbstd_features = mbstd_features
        self.conv = EqualConv2d(channels + mbstd_features, channels, 3)
        self.fc = DenseBlock(channels * 16, channels)
        self.out = DenseBlock(channels, 1, gain=1.0, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = minibatch_stddev(x, self.mbstd_group, self.mbstd_features)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x).squeeze(1)


class Discriminator(nn.Module):
    """Image ``[B, C_img, R, R]`` in [−1, 1] → realness logits ``[B]`` (float, unbounded).

    Weights are initialised for the equalized-learning-rate convention (all ~N(0, 1), biases
    0) at construction; a fresh network outputs logits of order 1.

    Args:
        config: architecture; see :class:`DiscriminatorConfig`.
    """

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        r = config.resolution
        self.from_rgb = EqualConv2d(config.image_channels, config.channels(r), 1)
        while r > 4:
            self.add_module(f"block{r}", DBlock(config.channels(r), config.channels(r // 2)))
            r //= 2
        self.epilogue = DEpilogue(config.channels(4), config.mbstd_group, config.mbstd_features)
        for m in self.modules():
            if isinstance(m, DenseBlock):
                nn.init.normal_(m.fc.weight, 0.0, 1.0 / m.wscale.lr_mul)
                nn.init.zeros_(m.wscale.bias)

    def blocks(self) -> list[DBlock]:
        """The downsampling blocks from resolution R to 8, in order."""
        out = []
        r = self.config.resolution
        while r > 4:
            out.append(getattr(self, f"block{r}"))
            r //= 2
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image [B, C_img, R, R]`` → logits ``[B]``."""
        c = self.config
        expected = (c.image_channels, c.resolution, c.resolution)
        if image.ndim != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(
                f"discriminator input must be [B, {c.image_channels}, {c.resolution}, "
                f"{c.resolution}], got {list(image.shape)}"
            )
        x = self.from_rgb(image)
        for block in self.blocks():
            x = block(x)
        return self.epilogue(x)

    def extra_repr(self) -> str:
        c = self.config
        return f"resolution={c.resolution}, fmaps_base={c.fmaps_base}, fmaps_max={c.fmaps_max}"
