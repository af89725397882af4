"""The fused generator epilogue vs the unfused operations and the earlier hand-fused function,
side by side in one run.

Run by hand (not in CI)::

    python benchmarks/fused_epilogue.py [--rounds 3] [--steps 6] [--resolution 256]

Two measurements, each alternating the two sides round after round (shared hosts vary):

* the epilogue alone, forward + backward, on channels-last bfloat16 convolution outputs of the
  sizes an ffhq256 generator produces: :func:`idinvert.core.models.fused_epilogue.fused_epilogue`
  against the unfused sequence the frozen bf16 copy ran first (cast, ``+ noise·strength +
  bias``, LeakyReLU, ``group_norm`` with one group per channel, ``addcmul`` style) and the
  hand-derived autograd function it ran next for every batch size ("hand-fused"; now only
  for batches of several images, a single image goes through ``F.batch_norm``);
* whole bf16 inversion steps (batch 1, and batch 4 per image) on ffhq256-sized random weights
  (as ``benchmarks/inversion.py``) and on the bundled model (batch 1), with the generator's
  fused path switched to the other sides'.

Printed: min and median milliseconds of each side and their ratio.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import idinvert.core.models.generator as generator_module
from idinvert.core.models.fused_epilogue import _FusedEpilogue, fused_epilogue
from idinvert.core.models.layers import LEAKY_SLOPE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as ab  # noqa: E402


def unfused_epilogue(
    x: torch.Tensor, shift: torch.Tensor, style: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """The operations the frozen bf16 copy ran before the fusion (same signature): the
    generator's own :func:`instance_norm` (group norm on channels-last tensors) between them."""
    channels = x.shape[1]
    h = F.leaky_relu(x.float() + shift, LEAKY_SLOPE, inplace=True)
    s = style.view(-1, 2, channels, 1, 1)
    return torch.addcmul(s[:, 1], generator_module.instance_norm(h, eps), s[:, 0] + 1.0)


def hand_fused_epilogue(
    x: torch.Tensor, shift: torch.Tensor, style: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """The hand-derived autograd function for every batch size (the one-image batch-norm
    form switched off)."""
    return _FusedEpilogue.apply(x, shift, style, eps)


SIDES: dict[str, Callable[..., torch.Tensor]] = {
    "unfused": unfused_epilogue,
    "hand-fused": hand_fused_epilogue,
    "fused": fused_epilogue,
}


def epilogue_alone(rounds: int, repeats: int) -> None:
    shapes = [
        (1, 512, 16),
        (1, 256, 64),
        (1, 128, 128),
        (1, 64, 256),
        (1, 24, 64),
        (4, 128, 128),
        (4, 64, 256),
    ]
    for batch, channels, size in shapes:
        torch.manual_seed(0)
        layout = torch.channels_last
        x = torch.randn(batch, channels, size, size).to(torch.bfloat16)
        x = x.contiguous(memory_format=layout)
        shift = (0.3 * torch.randn(1, channels, size, size)).contiguous(memory_format=layout)
        style = 0.5 * torch.randn(batch, 2 * channels)
        dy = torch.randn(batch, channels, size, size).contiguous(memory_format=layout)
        sides = {name: (lambda a, s, fn=fn, t=shift: fn(a, t, s)) for name, fn in SIDES.items()}
        times = ab.time_sides(sides, [x, style], dy, rounds, repeats)
        ab.summary(times, f"epilogue {batch}x{channels}x{size}x{size} fwd+bwd")


def main() -> None:
    args = ab.parse_args(__doc__, "epilogue calls")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU bf16 side by side")
    epilogue_alone(args.rounds, args.repeats)

    sides = ab.swap_sides(generator_module, "fused_epilogue", SIDES)
    for bundle, label, multiplier in ab.benchmark_models(args.resolution):
        ab.inversion_steps(bundle, args.rounds, multiplier * args.steps, label, sides)
        if multiplier == 1:  # the large model also as a batch of 4
            ab.inversion_steps(bundle, args.rounds, args.steps, label, sides, batch=4)


if __name__ == "__main__":
    main()
