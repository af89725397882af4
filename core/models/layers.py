"""Building blocks shared by the generator and the encoder.

All layers follow the official StyleGAN (TF) conventions the released IDInvert checkpoints were
trained with: weights are stored *unscaled* and multiplied by a fixed "equalized learning rate"
factor at run time (``gain / sqrt(fan_in) * lr_mul``), biases by ``lr_mul``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.derived import derived

LEAKY_SLOPE = 0.2


class WScaleBias(nn.Module):
    """Holds the bias of an equalized-learning-rate layer (state-dict key ``<name>.bias``).

    Args:
        channels: number of output channels / features.
        lr_mul: learning-rate multiplier applied to the bias at run time.
    """

    def __init__(self, channels: int, lr_mul: float = 1.0) -> None:
        super().__init__()
        self.lr_mul = lr_mul
        self.bias = nn.Parameter(torch.zeros(channels))

    def scaled_bias(self) -> torch.Tensor:
        """Return the bias multiplied by ``lr_mul``, shape ``[channels]``."""
        return self.bias * self.lr_mul if self.lr_mul != 1.0 else self.bias


class DenseBlock(nn.Module):
    """Fully connected layer with equalized learning rate: ``act(x W^T * s + b * lr_mul)``.

    State-dict keys: ``fc.weight [out, in]``, ``wscale.bias [out]``.

    Args:
        in_features: input width.
        out_features: output width.
        gain: He-style gain; the weight is scaled by ``gain / sqrt(in_features) * lr_mul``.
        lr_mul: learning-rate multiplier (0.01 in the StyleGAN mapping network).
        activate: apply LeakyReLU(0.2) after the affine map.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        gain: float = math.sqrt(2.0),
        lr_mul: float = 1.0,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activate = activate
        self.weight_scale = gain / math.sqrt(in_features) * lr_mul
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.wscale = WScaleBias(out_features, lr_mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, in_features]`` → ``[B, out_features]``."""
        weight, bias = self.fc.weight, self.wscale.bias
        out = F.linear(
            x,
            derived(self, "weight", lambda: weight * self.weight_scale, [weight]),
            derived(self, "bias", self.wscale.scaled_bias, [bias]),
        )
        return F.leaky_relu(out, LEAKY_SLOPE) if self.activate else out

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, "
            f"scale={self.weight_scale:.4g}, activate={self.activate}"
        )


class BatchNormBlock(nn.Module):
    """BatchNorm wrapper with the official key layout (``bn.weight``, ``bn.bias``, running stats).

    The official encoder freezes gamma (``requires_grad=False``) but still applies it.

    Args:
        channels: number of channels (features for the encoder's last block).
        trainable_gamma: whether gamma is trained (False in the official encoder).
    """

    def __init__(self, channels: int, trainable_gamma: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1, affine=True)
        self.bn.weight.requires_grad_(trainable_gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` → same shape."""
        return self.bn(x)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BatchNorm as an affine map ``x · multiplier + shift``, both ``[C]``:
        ``multiplier = γ / sqrt(running_var + eps)``, ``shift = β − running_mean · multiplier``.
        """
        bn = self.bn
        multiplier = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return multiplier, bn.bias - bn.running_mean * multiplier

    def fold_into_conv(
        self, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode ``bn(conv(x, weight) + bias)`` as one ``conv(x, weight', bias')``.

        Args:
            weight: ``[C, C_in, k, k]`` convolution kernel.
            bias: ``[C]`` bias added before the BatchNorm, or ``None``.

        Returns:
            ``weight' [C, C_in, k, k]`` and ``bias' [C]``.
        """
        multiplier, shift = self.folded()
        folded_bias = shift if bias is None else bias * multiplier + shift
        return weight * multiplier.view(-1, 1, 1, 1), folded_bias

    def sources(self) -> list[torch.Tensor]:
        """The tensors :meth:`folded` reads (for :func:`~idinvert.core.models.derived.derived`)."""
        bn = self.bn
        return [bn.weight, bn.bias, bn.running_mean, bn.running_var]


def blur_kernel(channels: int) -> torch.Tensor:
    """Depthwise ``[1, 2, 1]^T [1, 2, 1] / 16`` kernel, shape ``[channels, 1, 3, 3]``.

    Always built on the CPU (also inside a ``torch.device("meta")`` context): it is a constant
    that no weight file carries, see :func:`idinvert.core.models.build_without_init`.
    """
    k1 = torch.tensor([1.0, 2.0, 1.0], device="cpu")
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).expand(channels, 1, 3, 3).contiguous()


def fused_upsample_kernel(weight_tf: torch.Tensor, scale: float) -> torch.Tensor:
    """Turn a TF-layout 3×3 conv weight into the 4×4 transposed-conv kernel of a fused upsample.

    Nearest ×2 upsampling followed by a 3×3 convolution equals a stride-2 transposed convolution
    whose 4×4 kernel is the sum of the four one-pixel shifts of the (zero-padded) 3×3 kernel.

    Args:
        weight_tf: ``[3, 3, C_in, C_out]`` raw weight (TF layout, as stored by the checkpoints).
        scale: equalized-learning-rate factor ``gain / sqrt(C_in * 9)``.

    Returns:
        ``[C_in, C_out, 4, 4]`` kernel for ``conv_transpose2d(stride=2, padding=1)``, stored
        contiguously: a permuted view would be copied by every convolution call, forward and
        backward (on the 64 px bundled generator that copy was a fifth of its step).
    """
    k = F.pad(weight_tf * scale, (0, 0, 0, 0, 1, 1, 1, 1))  # [5, 5, C_in, C_out]
    k = k[1:, 1:] + k[:-1, 1:] + k[1:, :-1] + k[:-1, :-1]  # [4, 4, C_in, C_out]
    return k.permute(2, 3, 0, 1).contiguous()


def upsample_conv_kernel(weight: torch.Tensor, scale: float) -> torch.Tensor:
    """:func:`fused_upsample_kernel` for a PyTorch-layout kernel ``[C_out, C_in, 3, 3]``.

    The non-fused blocks' nearest ×2 upsampling + 3×3 convolution is the same linear map; as a
    stride-2 transposed convolution it costs 4 instead of 9 multiply-adds per output pixel and
    channel pair, and skips the upsampled intermediate.

    Returns:
        ``[C_in, C_out, 4, 4]`` kernel for ``conv_transpose2d(stride=2, padding=1)``.
    """
    # a transposed convolution applies its kernel mirrored: flip, then the TF layout
    return fused_upsample_kernel(weight.flip(2, 3).permute(2, 3, 1, 0), scale)
