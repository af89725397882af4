"""Convolutions with kernels reordered once vs reordered by every call, side by side in one run.

Run by hand (not in CI)::

    python benchmarks/reordered_conv.py [--rounds 3] [--steps 6] [--resolution 256]

Two measurements, alternating the two sides round after round (shared hosts vary):

* single convolutions, forward + input gradient, channels-last bfloat16 (float32 where the
  CPU has no native bfloat16), at sizes the ffhq256 encoder, generator and VGG16 run:
  ``F.conv2d`` / ``F.conv_transpose2d`` ("plain": oneDNN reorders the kernel on every call,
  twice per step) against :func:`idinvert.core.models.packed_conv.frozen_conv2d` /
  ``frozen_conv_transpose2d`` ("reordered");
* whole bf16 inversion steps (batch 1) on ffhq256-sized random weights (as
  ``benchmarks/inversion.py``) and on the bundled model, with reordering switched off for the
  "plain" side.

Printed: min and median milliseconds of each side and their ratio.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import idinvert.core.models.packed_conv as packed_conv

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as ab  # noqa: E402

SIDES = ("plain", "reordered")
#: (batch, C_in, size, C_out) of 3×3 same-size convolutions in an ffhq256 inversion step.
LAYERS = [
    (1, 1024, 4, 1024),  # encoder, last residual blocks
    (1, 1024, 8, 1024),
    (1, 512, 4, 512),  # generator 4×4, 8×8
    (1, 512, 8, 512),
    (1, 512, 16, 512),
    (1, 512, 32, 512),  # generator 32×32, VGG conv4
    (1, 256, 64, 256),  # VGG conv3
]
#: (batch, C_in, size, C_out) of the ffhq256 generator's 4×4 stride-2 up-convolutions.
TRANSPOSED_LAYERS = [(1, 512, 8, 512), (1, 512, 16, 512), (1, 512, 32, 256)]


def single_layers(rounds: int, repeats: int, dtype: torch.dtype) -> None:
    cl = torch.channels_last
    for transposed, layers in ((False, LAYERS), (True, TRANSPOSED_LAYERS)):
        for batch, c_in, size, c_out in layers:
            torch.manual_seed(0)
            x = torch.randn(batch, c_in, size, size).to(dtype).contiguous(memory_format=cl)
            owner = nn.Module()
            if transposed:
                w = (0.02 * torch.randn(c_in, c_out, 4, 4)).to(dtype).contiguous(memory_format=cl)
                out = 2 * size
                sides = {
                    "plain": lambda a, w=w: F.conv_transpose2d(a, w, stride=2, padding=1),
                    "reordered": lambda a, w=w, o=owner: packed_conv.frozen_conv_transpose2d(
                        o, "up", a, w, 2, 1
                    ),
                }
                label = f"up-conv4x4/2 {batch}x{c_in}x{size}x{size}->{c_out} fwd+bwd"
            else:
                w = (0.02 * torch.randn(c_out, c_in, 3, 3)).to(dtype).contiguous(memory_format=cl)
                out = size
                sides = {
                    "plain": lambda a, w=w: F.conv2d(a, w, padding=1),
                    "reordered": lambda a, w=w, o=owner: packed_conv.frozen_conv2d(
                        o, "conv", a, w, None, 1
                    ),
                }
                label = f"conv3x3 {batch}x{c_in}x{size}x{size}->{c_out} fwd+bwd"
            dy = torch.randn(batch, c_out, out, out).to(dtype).contiguous(memory_format=cl)
            ab.summary(ab.time_sides(sides, [x], dy, rounds, repeats), label)


def main() -> None:
    args = ab.parse_args(__doc__, "convolution calls")
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    dtype = torch.bfloat16 if native else torch.float32
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, layers in {dtype}")
    single_layers(args.rounds, args.repeats, dtype)
    if not native:
        print("no native bfloat16 on this CPU: bf16 inversion steps skipped")
        return

    never = lambda *args: False  # noqa: E731
    sides = ab.swap_sides(
        packed_conv, "_reorderable", {"plain": never, "reordered": packed_conv._reorderable}
    )
    for bundle, label, multiplier in ab.benchmark_models(args.resolution):
        ab.inversion_steps(bundle, args.rounds, multiplier * args.steps, label, sides)


if __name__ == "__main__":
    main()
