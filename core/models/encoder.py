"""The domain-guided encoder (architecture of the official PyTorch port, with BatchNorm).

Image ``[B, 3, R, R]`` in [−1, 1] → W+ code ``[B, L, D]``. Parameter names match the official
``styleganinv_*_encoder.pth`` checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.derived import derived
from idinvert.core.models.frozen_linear import frozen_linear
from idinvert.core.models.layers import LEAKY_SLOPE, BatchNormBlock, WScaleBias
from idinvert.core.models.packed_conv import frozen_conv2d


def _conv_bn_lrelu(
    owner: nn.Module,
    name: str,
    x: torch.Tensor,
    conv: nn.Conv2d,
    bn: BatchNormBlock,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``LeakyReLU(bn(conv(x) + bias))`` for ``x [B, C_in, r, r]`` → ``[B, C_out, r, r]``.

    In training mode the BatchNorm normalises with batch statistics, as written. In eval mode
    it is an affine map folded into the convolution (kernel and bias computed once while the
    weights stay frozen): one convolution with bias and an in-place LeakyReLU instead of four
    passes over the activations, forward and backward.
    """
    pad = conv.padding
    if bn.training:
        y = F.conv2d(x, conv.weight, padding=pad)
        if bias is not None:
            y = y + bias.view(1, -1, 1, 1)
        return F.leaky_relu(bn(y), LEAKY_SLOPE)
    sources = [conv.weight, *bn.sources(), *([] if bias is None else [bias])]
    weight, folded_bias = derived(
        owner, name, lambda: bn.fold_into_conv(conv.weight, bias), sources
    )
    y = frozen_conv2d(owner, name, x, weight, folded_bias, padding=pad)
    return F.leaky_relu(y, LEAKY_SLOPE, inplace=True)


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an :class:`Encoder`; stored in a model's ``config.json``.

    Attributes:
        resolution: input side length R (power of two, 8..1024).
        w_dim: code dimension D.
        num_layers: number L of W+ codes produced; ``None`` derives the generator's
            ``2 * (log2 R - 1)``.
        channels_base: channels of the first block; doubled per block.
        channels_max: channel cap.
        image_channels: input channels (3).
        trainable_gamma: train the BatchNorm scales (the official port freezes them).
    """

    resolution: int = 256
    w_dim: int = 512
    num_layers: int | None = None
    channels_base: int = 64
    channels_max: int = 1024
    image_channels: int = 3
    trainable_gamma: bool = False

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in 8..1024, got {r}")

    @property
    def code_layers(self) -> int:
        """Number L of codes in the output."""
        return (
            self.num_layers
            if self.num_layers is not None
            else 2 * (int(math.log2(self.resolution)) - 1)
        )

    @property
    def num_blocks(self) -> int:
        """First block + ``log2(R) - 2`` residual blocks + the last (dense) block."""
        return int(math.log2(self.resolution))

    def block_channels(self, index: int) -> int:
        """Output channels of convolutional block ``index``."""
        return min(self.channels_base * 2**index, self.channels_max)

    def to_dict(self) -> dict:
        return asdict(self)


class FirstBlock(nn.Module):
    """conv3×3 (no bias) → BN → LeakyReLU at full resolution.

    Computes in its own dtype; a bfloat16 copy keeps it float32 (``keep_float32``): a
    3-channel input leaves bfloat16 kernels (AMX) idle and is 4× slower there.
    """

    keep_float32 = True

    def __init__(self, in_channels: int, out_channels: int, trainable_gamma: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = BatchNormBlock(out_channels, trainable_gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_bn_lrelu(self, "conv", x.to(self.conv.weight.dtype), self.conv, self.bn)


class ResBlock(nn.Module):
    """Residual block: main = 2 × (conv3×3 + bias → BN → LeakyReLU), shortcut = identity or
    conv1×1 → BN → LeakyReLU when the channel count changes; output = main + shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, trainable_gamma: bool) -> None:
        super().__init__()
        hidden = min(in_channels, out_channels)
        self.has_shortcut_conv = in_channels != out_channels
        if self.has_shortcut_conv:
            self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.bn = BatchNormBlock(out_channels, trainable_gamma)
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.wscale1 = WScaleBias(hidden)
        self.bn1 = BatchNormBlock(hidden, trainable_gamma)
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, padding=1, bias=False)
        self.wscale2 = WScaleBias(out_channels)
        self.bn2 = BatchNormBlock(out_channels, trainable_gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C_in, r, r]`` → ``[B, C_out, r, r]`` (in this block's dtype)."""
        x = x.to(self.conv1.weight.dtype)
        if self.has_shortcut_conv:
            shortcut = _conv_bn_lrelu(self, "shortcut", x, self.conv, self.bn)
        else:
            shortcut = x
        y = _conv_bn_lrelu(self, "conv1", x, self.conv1, self.bn1, self.wscale1.bias)
        y = _conv_bn_lrelu(self, "conv2", y, self.conv2, self.bn2, self.wscale2.bias)
        return y + shortcut


class LastBlock(nn.Module):
    """Flatten (C, H, W order) → dense (no bias, scale ``1/sqrt(in)``) → BN over features.

    Computes in its own dtype; a bfloat16 copy keeps it float32 (``keep_float32``): at batch 1
    the dense layer is a matrix-vector product bound by memory, where bfloat16 kernels were
    measured slower than float32, and the codes come out unrounded. Batches of two or more
    rows go through oneDNN (:func:`~idinvert.core.models.frozen_linear.frozen_linear`).
    """

    keep_float32 = True

    def __init__(self, in_features: int, out_features: int, trainable_gamma: bool) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(in_features)
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.bn = BatchNormBlock(out_features, trainable_gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, 4, 4]`` → ``[B, out_features]``."""
        x = x.to(self.fc.weight.dtype)
        y = frozen_linear(x.reshape(x.shape[0], -1), self.fc.weight) * self.scale
        return self.bn(y[:, :, None, None])[:, :, 0, 0]


class Encoder(nn.Module):
    """Domain-guided encoder E: image ``[B, 3, R, R]`` in [−1, 1] → W+ ``[B, L, D]``.

    Blocks: ``block0`` FirstBlock at R; ``block1..block{n-2}`` avg-pool ×½ then ResBlock
    (down to 4×4); ``block{n-1}`` LastBlock, with ``n = log2 R``.

    Args:
        config: architecture; see :class:`EncoderConfig`.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        n = config.num_blocks
        gamma = config.trainable_gamma
        self.block0 = FirstBlock(config.image_channels, config.block_channels(0), gamma)
        for i in range(1, n - 1):
            block = ResBlock(config.block_channels(i - 1), config.block_channels(i), gamma)
            self.add_module(f"block{i}", block)
        in_features = config.block_channels(n - 2) * 16
        out_features = config.code_layers * config.w_dim
        self.add_module(f"block{n - 1}", LastBlock(in_features, out_features, gamma))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, R, R]`` in [−1, 1] → codes ``[B, L, D]``."""
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.image_channels, c.resolution, c.resolution):
            raise ValueError(
                f"encoder input must be [B, {c.image_channels}, {c.resolution}, {c.resolution}], "
                f"got {list(x.shape)}"
            )
        n = c.num_blocks
        x = self.block0(x)
        for i in range(1, n - 1):
            x = getattr(self, f"block{i}")(F.avg_pool2d(x, 2))
        x = getattr(self, f"block{n - 1}")(x)
        return x.view(x.shape[0], c.code_layers, c.w_dim)

    def extra_repr(self) -> str:
        c = self.config
        return f"resolution={c.resolution}, L={c.code_layers}, w_dim={c.w_dim}"
