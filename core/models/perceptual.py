"""Perceptual feature extractor F: VGG16 up to ReLU(conv4_3).

Two input conventions are supported because two sets of VGG16 weights exist:

* ``"caffe"`` — the official IDInvert network (Keras ImageNet VGG16 converted to PyTorch):
  RGB → BGR, 0..255, minus the per-channel mean ``(103.939, 116.779, 123.68)`` (BGR order).
* ``"torchvision"`` — torchvision's / LPIPS' ImageNet VGG16: RGB in [0, 1], normalised by the
  ImageNet mean and std. Its features are multiplied by ``output_scale`` so that the loss
  weight 5e-5 of the paper keeps its meaning (``255 * std`` ≈ 57.8 puts the inputs, and
  hence the features, on the caffe scale).

Parameter names ``layer{i}.weight/bias`` follow the official ``vgg16.pth``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from idinvert.core.models.packed_conv import frozen_conv2d

#: Indices (in the official ``nn.Sequential`` numbering) of the conv layers up to conv4_3.
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)
#: Indices of all 13 VGG16 convolutions (the official ``vgg16.pth`` stores them all).
ALL_CONV_INDICES: tuple[int, ...] = CONV_INDICES + (24, 26, 28)
#: Conv indices followed by a 2×2 max-pool.
_POOL_AFTER: frozenset[int] = frozenset({2, 7, 14})
_CHANNELS: dict[int, tuple[int, int]] = {
    0: (3, 64),
    2: (64, 64),
    5: (64, 128),
    7: (128, 128),
    10: (128, 256),
    12: (256, 256),
    14: (256, 256),
    17: (256, 512),
    19: (512, 512),
    21: (512, 512),
    24: (512, 512),
    26: (512, 512),
    28: (512, 512),
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
TORCHVISION_OUTPUT_SCALE = 255.0 * 0.226

Preprocessing = Literal["caffe", "torchvision"]


@dataclass(frozen=True)
class PerceptualConfig:
    """Configuration of :class:`PerceptualNet`.

    Attributes:
        preprocessing: ``"caffe"`` (official Keras weights) or ``"torchvision"``.
        output_scale: factor applied to the features (1.0 for caffe).
        source: free-text provenance of the weights (for model cards).
    """

    preprocessing: Preprocessing = "caffe"
    output_scale: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.preprocessing not in ("caffe", "torchvision"):
            raise ValueError(
                f"preprocessing must be 'caffe' or 'torchvision', got {self.preprocessing!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class InputNormalization(nn.Module):
    """RGB ``[B, 3, H, W]`` in [−1, 1] → a VGG16's input convention, computed in float32.

    ``y = (x + 1) · scale − shift`` per channel (after the RGB → BGR permutation for caffe).
    The constants are non-persistent float32 buffers that a bfloat16 copy keeps
    (``keep_float32``): rounded to bfloat16, the caffe mean 103.939 would become 104.
    """

    keep_float32 = True

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        cpu = torch.device("cpu")  # constants, also when the layers are built on "meta"
        if preprocessing == "caffe":
            shift = torch.tensor(CAFFE_MEAN_BGR, device=cpu)
            scale = torch.full((3,), 127.5, device=cpu)
        else:
            std = torch.tensor(IMAGENET_STD_RGB, device=cpu)
            shift = torch.tensor(IMAGENET_MEAN_RGB, device=cpu) / std
            scale = 0.5 / std
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.scale.dtype)
        if self.preprocessing == "caffe":
            return ((x + 1.0) * 255.0 / 2.0)[:, [2, 1, 0]] - self.shift
        return (x + 1.0) * self.scale - self.shift


class PerceptualNet(nn.Module):
    """VGG16 features to ReLU(conv4_3): image ``[B, 3, H, W]`` in [−1, 1] (RGB) →
    ``[B, 512, H/8, W/8]``.

    Args:
        config: input convention and output scale; see :class:`PerceptualConfig`.
    """

    def __init__(self, config: PerceptualConfig | None = None) -> None:
        super().__init__()
        self.config = config or PerceptualConfig()
        for idx in CONV_INDICES:
            cin, cout = _CHANNELS[idx]
            self.add_module(f"layer{idx}", nn.Conv2d(cin, cout, 3, padding=1))
        self.layer0.keep_float32 = True  # 3 input channels: bfloat16 kernels are 4× slower
        self.normalize = InputNormalization(self.config.preprocessing)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``[B, 3, H, W]`` in [−1, 1] → the network's input convention."""
        return self.normalize(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, H, W]`` in [−1, 1] → features ``[B, 512, H/8, W/8]`` (≥ 0)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"perceptual input must be [B, 3, H, W], got {list(x.shape)}")
        y = self.preprocess(x)
        for idx in CONV_INDICES:
            conv = getattr(self, f"layer{idx}")  # each layer computes in its own dtype
            y = y.to(conv.weight.dtype)
            y = frozen_conv2d(self, f"layer{idx}", y, conv.weight, conv.bias, conv.padding)
            y = F.relu(y, inplace=True)  # on a fresh conv output
            if idx in _POOL_AFTER:
                y = F.max_pool2d(y, 2)
        if self.config.output_scale != 1.0:
            y = y * self.config.output_scale
        return y
