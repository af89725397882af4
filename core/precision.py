"""Compute precision of the inversion loop: float32 (exact) or bfloat16 networks.

``"fp32"`` is the default and reproduces the official numbers. ``"bf16"`` runs the generator,
encoder and perceptual network on bfloat16 copies of their weights (activations in bfloat16,
each network's output cast back to float32); the codes, the losses and Adam stay float32.
On CPUs with AMX / AVX-512 BF16 (and on recent GPUs) this is much faster; the optimisation
follows a slightly different trajectory (bfloat16 keeps 8 mantissa bits) and reaches the same
objective within about 1 % (``benchmarks/inversion.py`` measures both). On a CPU without native
bfloat16 it still works but is slower, so :func:`warn_if_slow` says so.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}

log = logging.getLogger(__name__)


def precision_dtype(name: str) -> torch.dtype:
    """``"fp32"`` → ``torch.float32``, ``"bf16"`` → ``torch.bfloat16``.

    Raises:
        ValueError: any other name (lists the accepted ones).
    """
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}"
        ) from None


def lowered_copy(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen, eval-mode copy of ``net`` with floating-point parameters/buffers in ``dtype``.

    Submodules that declare ``keep_float32 = True`` (class or instance attribute: the
    generator's epilogues and ToRGB, the encoder's first and last blocks, the perceptual net's
    first convolution and input normalisation), and everything inside them, stay float32 and
    share their tensors with ``net`` (no copy: the encoder's last block alone is 470 MB at
    ffhq256), except that every 4-D kernel is stored channels-last (a copy where the original
    is not). Every module casts its input to its own dtype, so a copy mixes both freely.
    Stored derived tensors (:mod:`idinvert.core.models.derived`) are not copied.
    """
    memo: dict[int, object] = {}

    def lower(module: nn.Module, keep: bool) -> None:
        keep = keep or bool(getattr(module, "keep_float32", False))
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if id(tensor) in memo:
                continue
            data = tensor.detach()
            if not keep and data.is_floating_point():
                data = data.to(dtype)
            if data.ndim == 4 and data.is_floating_point() and data.shape[1] > 1:
                # conv kernels channels-last: the layout of oneDNN's bfloat16 (AMX) kernels,
                # 2–7× faster than NCHW at 64–256 channels; activations follow the kernels
                data = data.contiguous(memory_format=torch.channels_last)
            if isinstance(tensor, nn.Parameter):
                data = nn.Parameter(data, requires_grad=False)
            memo[id(tensor)] = data
        for child in module.children():
            lower(child, keep)

    lower(net, False)
    return copy.deepcopy(net, memo).eval()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CPU: oneDNN AVX-512 BF16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(probe()) if probe is not None else False
    return True


def warn_if_slow(device: torch.device, dtype: torch.dtype) -> None:
    """Log a warning when bfloat16 is requested on a device that emulates it."""
    if dtype == torch.bfloat16 and not native_bf16(device):
        log.warning(
            "precision bf16 requested but %s has no native bfloat16 support: "
            "it will be slower than fp32",
            device,
        )
