"""Official-layout IDInvert checkpoints and the official forward pass, written from the spec.

Nothing here imports idinvert: the state dicts follow the key names, shapes and order of the
official ``genforce/idinvert_pytorch`` networks as documented in the reference summary
(``StyleGANGeneratorNet`` / ``StyleGANEncoderNet`` / ``VGG16``) and checked against the real
ffhq256 manifest (``tests/data/reference/manifest_ffhq256.json``) by
``tests/test_official_layout.py``. :func:`official_synthesis` is an independent functional
re-statement of the official synthesis network (fused up-convolution included), used to check
that converted models compute what the official code computes.

Random values follow the vector sets' recipe (TF lr-multiplier convention for the mapping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

StateDict = dict[str, torch.Tensor]

VGG16_CONVS = [
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
    (24, 512, 512),
    (26, 512, 512),
    (28, 512, 512),
]


@dataclass(frozen=True)
class OfficialConfig:
    """Constructor arguments of the official networks (defaults: ``styleganinv_ffhq256``).

    ``mapping_hidden`` is the mapping's hidden width (the official code uses ``fmaps_max``);
    ``fused_scale`` is ``"auto"`` (fused up-convolution at res >= 128), ``True`` or ``False``.
    """

    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_hidden: int | None = None
    fmaps_base: int = 16384
    fmaps_max: int = 512
    fused_scale: object = "auto"
    truncation_psi: float = 0.7
    truncation_layers: int = 8
    encoder_base: int = 64
    encoder_max: int = 1024

    @property
    def num_layers(self) -> int:
        return 2 * (int(math.log2(self.resolution)) - 1)

    @property
    def hidden(self) -> int:
        return self.mapping_hidden or self.fmaps_max

    def channels(self, res: int) -> int:
        return min(self.fmaps_base // res, self.fmaps_max)

    def fused(self, res: int) -> bool:
        return res >= 128 if self.fused_scale == "auto" else bool(self.fused_scale)


#: ffhq256's 14 layers and 512-wide z/w (so the official ffhq256 boundaries apply) at reduced
#: channel widths: a 256 px official-layout model small enough for the default test suite.
REDUCED_FFHQ256 = OfficialConfig(
    resolution=256,
    z_dim=512,
    w_dim=512,
    mapping_layers=2,
    mapping_hidden=64,
    fmaps_base=512,
    fmaps_max=16,
    encoder_base=4,
    encoder_max=16,
)


def _blur(channels: int) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    return (k[:, None] * k[None, :] / 16.0).expand(channels, 1, 3, 3).clone()


def official_generator_state(
    cfg: OfficialConfig, seed: int = 0, *, empty: bool = False
) -> StateDict:
    """A ``StyleGANGeneratorNet.state_dict()`` in the official key order, random values.

    Fused blocks hold ``synthesis.layer{i}.weight`` ``[3, 3, C_in, C_out]`` beside
    ``blur.kernel`` (no ``conv`` submodule); every resolution has its progressive-growing
    ``output{k}`` ToRGB; ``synthesis.lod`` is 0; ``truncation.truncation`` ``[1, L, 1]``.
    ``empty=True`` gives uninitialised values (layout checks).
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        if empty:  # names and shapes only (full-size layouts without filling 800 MB)
            return torch.empty(*shape)
        return torch.randn(*shape, generator=g) * std + mean

    L, D = cfg.num_layers, cfg.w_dim
    sd: StateDict = {}
    for i in range(cfg.mapping_layers):
        fan_in = cfg.z_dim if i == 0 else cfg.hidden
        out = L * D if i == cfg.mapping_layers - 1 else cfg.hidden
        sd[f"mapping.dense{i}.fc.weight"] = randn(out, fan_in, std=100.0)
        sd[f"mapping.dense{i}.wscale.bias"] = randn(out, std=10.0)
    sd["truncation.w_avg"] = randn(D, std=0.5)
    coef = torch.ones(1, L, 1)
    coef[:, : cfg.truncation_layers] = cfg.truncation_psi
    sd["truncation.truncation"] = coef
    sd["synthesis.lod"] = torch.tensor(0.0)

    def epilogue(i: int, c: int, res: int) -> None:
        p = f"synthesis.layer{i}.epilogue."
        sd[p + "bias"] = randn(c, std=0.1)
        sd[p + "apply_noise.weight"] = randn(c, std=0.1)
        sd[p + "apply_noise.noise"] = randn(1, 1, res, res)
        sd[p + "style_mod.dense.fc.weight"] = randn(2 * c, D)
        sd[p + "style_mod.dense.wscale.bias"] = randn(2 * c, std=0.1)

    c4 = cfg.channels(4)
    sd["synthesis.layer0.const"] = randn(1, c4, 4, 4, std=0.5, mean=1.0)
    epilogue(0, c4, 4)
    sd["synthesis.layer1.conv.weight"] = randn(c4, c4, 3, 3)
    epilogue(1, c4, 4)
    sd["synthesis.output0.bias"] = randn(3, std=0.1)
    sd["synthesis.output0.conv.weight"] = randn(3, c4, 1, 1)
    for k in range(1, int(math.log2(cfg.resolution)) - 1):
        res = 4 * 2**k
        cin, cout = cfg.channels(res // 2), cfg.channels(res)
        up, same = 2 * k, 2 * k + 1
        if cfg.fused(res):
            sd[f"synthesis.layer{up}.weight"] = randn(3, 3, cin, cout)
        else:
            sd[f"synthesis.layer{up}.conv.weight"] = randn(cout, cin, 3, 3)
        sd[f"synthesis.layer{up}.blur.kernel"] = _blur(cout)
        epilogue(up, cout, res)
        sd[f"synthesis.layer{same}.conv.weight"] = randn(cout, cout, 3, 3)
        epilogue(same, cout, res)
        sd[f"synthesis.output{k}.bias"] = randn(3, std=0.1)
        sd[f"synthesis.output{k}.conv.weight"] = randn(3, cout, 1, 1)
    return sd


def official_encoder_state(cfg: OfficialConfig, seed: int = 0, *, empty: bool = False) -> StateDict:
    """A ``StyleGANEncoderNet.state_dict()`` (``use_wscale=False, use_bn=True``), random values.

    Blocks ``0 .. log2(R) - 1``: FirstBlock, ResBlocks (1×1 shortcut only where the width
    changes), LastBlock ``fc [L·D, C·16]``; every BN has weight/bias/running stats and an int64
    ``num_batches_tracked``. ``empty=True`` gives uninitialised values (layout checks).
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        if empty:  # names and shapes only (full-size layouts without filling 800 MB)
            return torch.empty(*shape)
        return torch.randn(*shape, generator=g) * std + mean

    sd: StateDict = {}

    def bn(prefix: str, c: int) -> None:
        sd[prefix + ".bn.weight"] = randn(c, std=0.1, mean=1.0)
        sd[prefix + ".bn.bias"] = randn(c, std=0.1)
        sd[prefix + ".bn.running_mean"] = randn(c, std=0.1)
        sd[prefix + ".bn.running_var"] = randn(c, std=0.1).abs() + 0.5
        sd[prefix + ".bn.num_batches_tracked"] = torch.tensor(100, dtype=torch.int64)

    n = int(math.log2(cfg.resolution))
    widths = [min(cfg.encoder_base * 2**i, cfg.encoder_max) for i in range(n - 1)]
    sd["block0.conv.weight"] = randn(widths[0], 3, 3, 3, std=math.sqrt(2 / 27))
    bn("block0.bn", widths[0])
    for i in range(1, n - 1):
        cin, cout = widths[i - 1], widths[i]
        hidden = min(cin, cout)
        if cin != cout:
            sd[f"block{i}.conv.weight"] = randn(cout, cin, 1, 1, std=math.sqrt(2 / cin))
            bn(f"block{i}.bn", cout)
        sd[f"block{i}.conv1.weight"] = randn(hidden, cin, 3, 3, std=math.sqrt(2 / (cin * 9)))
        sd[f"block{i}.wscale1.bias"] = randn(hidden, std=0.1)
        bn(f"block{i}.bn1", hidden)
        sd[f"block{i}.conv2.weight"] = randn(cout, hidden, 3, 3, std=math.sqrt(2 / (hidden * 9)))
        sd[f"block{i}.wscale2.bias"] = randn(cout, std=0.1)
        bn(f"block{i}.bn2", cout)
    out = cfg.num_layers * cfg.w_dim
    sd[f"block{n - 1}.fc.weight"] = randn(out, widths[-1] * 16)
    bn(f"block{n - 1}.bn", out)
    return sd


def official_vgg16_state(seed: int = 0) -> StateDict:
    """The official ``vgg16.pth`` layout: ``layer{i}.weight [out, in, 3, 3]`` and
    ``layer{i}.bias`` for all 13 convolutions (He-normal values)."""
    g = torch.Generator().manual_seed(seed)
    sd: StateDict = {}
    for idx, cin, cout in VGG16_CONVS:
        sd[f"layer{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(
            2 / (cin * 9)
        )
        sd[f"layer{idx}.bias"] = torch.randn(cout, generator=g) * 0.01
    return sd


# --- the official synthesis network, restated functionally from the spec -----------------------


def _dense(sd: StateDict, prefix: str, x: torch.Tensor, gain: float, lr_mul: float) -> torch.Tensor:
    w = sd[prefix + ".fc.weight"]
    return (
        F.linear(x, w) * (gain / math.sqrt(w.shape[1]) * lr_mul)
        + sd[prefix + ".wscale.bias"] * lr_mul
    )


def _epilogue(sd: StateDict, i: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    p = f"synthesis.layer{i}.epilogue."
    c = x.shape[1]
    x = x + sd[p + "apply_noise.noise"] * sd[p + "apply_noise.weight"].view(1, c, 1, 1)
    x = x + sd[p + "bias"].view(1, c, 1, 1)
    x = F.leaky_relu(x, 0.2)
    x = x - x.mean(dim=(2, 3), keepdim=True)
    x = x / torch.sqrt((x * x).mean(dim=(2, 3), keepdim=True) + 1e-8)
    style = _dense(sd, p + "style_mod.dense", w, 1.0, 1.0).view(-1, 2, c, 1, 1)
    return x * (style[:, 0] + 1) + style[:, 1]


def official_synthesis(sd: StateDict, wp: torch.Tensor) -> torch.Tensor:
    """``G.synthesis(wp)`` of the official network (lod 0, fixed noise, final tanh).

    Args:
        sd: an official-layout generator state dict.
        wp: W+ codes ``[B, L, D]``.

    Returns:
        Images ``[B, 3, R, R]`` in (-1, 1).
    """
    num_layers = wp.shape[1]
    const = sd["synthesis.layer0.const"]
    x = _epilogue(sd, 0, const.repeat(wp.shape[0], 1, 1, 1), wp[:, 0])
    for i in range(1, num_layers):
        fused_key = f"synthesis.layer{i}.weight"
        if fused_key in sd:  # fused up-convolution, TF layout [3, 3, in, out]
            k = sd[fused_key]
            k = k * (math.sqrt(2) / math.sqrt(k.shape[2] * 9))
            k = F.pad(k.permute(2, 3, 0, 1), (1, 1, 1, 1))  # [in, out, 5, 5]
            k = k[:, :, 1:, 1:] + k[:, :, :-1, 1:] + k[:, :, 1:, :-1] + k[:, :, :-1, :-1]
            x = F.conv_transpose2d(x, k, stride=2, padding=1)
        else:
            wgt = sd[f"synthesis.layer{i}.conv.weight"]
            if i % 2 == 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = F.conv2d(x, wgt, padding=1) * (math.sqrt(2) / math.sqrt(wgt.shape[1] * 9))
        if i % 2 == 0:
            x = F.conv2d(x, sd[f"synthesis.layer{i}.blur.kernel"], padding=1, groups=x.shape[1])
        x = _epilogue(sd, i, x, wp[:, i])
    k = num_layers // 2 - 1
    w = sd[f"synthesis.output{k}.conv.weight"]
    x = F.conv2d(x, w) / math.sqrt(w.shape[1]) + sd[f"synthesis.output{k}.bias"].view(1, -1, 1, 1)
    return torch.tanh(x)


def official_mapping(sd: StateDict, z: torch.Tensor, num_layers: int) -> torch.Tensor:
    """``truncation(mapping(z))`` of the official network → W+ ``[B, L, D]`` (truncated)."""
    x = z / torch.sqrt((z * z).mean(dim=1, keepdim=True) + 1e-8)
    i = 0
    while f"mapping.dense{i}.fc.weight" in sd:
        x = F.leaky_relu(_dense(sd, f"mapping.dense{i}", x, math.sqrt(2), 0.01), 0.2)
        i += 1
    wp = x.view(x.shape[0], num_layers, -1)
    w_avg = sd["truncation.w_avg"].view(1, 1, -1)
    coef = sd["truncation.truncation"]
    return w_avg + (wp - w_avg) * coef


def _bn(sd: StateDict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[prefix + ".bn.running_mean"],
        sd[prefix + ".bn.running_var"],
        sd[prefix + ".bn.weight"],
        sd[prefix + ".bn.bias"],
        training=False,
        eps=1e-5,
    )


def official_encode(sd: StateDict, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """``E(x)`` of the official PyTorch encoder (eval-mode BN) → W+ ``[B, L, D]``.

    Args:
        sd: an official-layout encoder state dict.
        x: images ``[B, 3, R, R]`` in [-1, 1].
        num_layers: L of the generator the encoder belongs to.
    """
    n = 0
    while f"block{n}.conv.weight" in sd or f"block{n}.conv1.weight" in sd:
        n += 1
    x = F.leaky_relu(_bn(sd, "block0.bn", F.conv2d(x, sd["block0.conv.weight"], padding=1)), 0.2)
    for i in range(1, n):
        x = F.avg_pool2d(x, 2)
        if f"block{i}.conv.weight" in sd:
            shortcut = F.leaky_relu(
                _bn(sd, f"block{i}.bn", F.conv2d(x, sd[f"block{i}.conv.weight"])), 0.2
            )
        else:
            shortcut = x
        h = F.conv2d(x, sd[f"block{i}.conv1.weight"], padding=1)
        h = h + sd[f"block{i}.wscale1.bias"].view(1, -1, 1, 1)
        h = F.leaky_relu(_bn(sd, f"block{i}.bn1", h), 0.2)
        h = F.conv2d(h, sd[f"block{i}.conv2.weight"], padding=1)
        h = h + sd[f"block{i}.wscale2.bias"].view(1, -1, 1, 1)
        h = F.leaky_relu(_bn(sd, f"block{i}.bn2", h), 0.2)
        x = h + shortcut
    w = sd[f"block{n}.fc.weight"]
    x = F.linear(x.reshape(x.shape[0], -1), w) / math.sqrt(w.shape[1])
    x = _bn(sd, f"block{n}.bn", x[:, :, None, None])
    return x.view(x.shape[0], num_layers, -1)
