"""The fused generator epilogue vs the unfused operations, side by side in one run.

Run by hand (not in CI)::

    python benchmarks/fused_epilogue.py [--rounds 3] [--steps 6] [--resolution 256]

Two measurements, each alternating the two sides round after round (shared hosts vary):

* the epilogue alone, forward + backward, on channels-last bfloat16 convolution outputs of the
  sizes an ffhq256 generator produces: :func:`idinvert.core.models.fused_epilogue.fused_epilogue`
  against the unfused sequence the frozen bf16 copy ran before (cast, ``+ noise·strength + bias``,
  LeakyReLU, ``group_norm`` with one group per channel, ``addcmul`` style);
* whole bf16 inversion steps (batch 1) on ffhq256-sized random weights (as
  ``benchmarks/inversion.py``) and on the bundled model, with the generator's fused path
  switched to the unfused sequence for the "unfused" side.

Printed: min and median milliseconds of each side and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import idinvert.core.models.generator as generator_module
from idinvert.core.inversion import InversionSettings, invert
from idinvert.core.models.fused_epilogue import fused_epilogue
from idinvert.core.models.layers import LEAKY_SLOPE
from idinvert.core.runtime import tune_cpu_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inversion import build_networks  # noqa: E402


def unfused_epilogue(
    x: torch.Tensor, shift: torch.Tensor, style: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """The operations the frozen bf16 copy ran before the fusion (same signature): the
    generator's own :func:`instance_norm` (group norm on channels-last tensors) between them."""
    channels = x.shape[1]
    h = F.leaky_relu(x.float() + shift, LEAKY_SLOPE, inplace=True)
    s = style.view(-1, 2, channels, 1, 1)
    return torch.addcmul(s[:, 1], generator_module.instance_norm(h, eps), s[:, 0] + 1.0)


SIDES: dict[str, Callable[..., torch.Tensor]] = {
    "unfused": unfused_epilogue,
    "fused": fused_epilogue,
}


def summary(times: dict[str, list[float]], label: str) -> None:
    """One line per side plus the ratio (unfused / fused) of minima and of medians."""
    mins = {k: min(v) for k, v in times.items()}
    meds = {k: statistics.median(v) for k, v in times.items()}
    for key in times:
        print(
            f"{label:34s} {key:8s} min {mins[key] * 1e3:8.2f} ms  median {meds[key] * 1e3:8.2f} ms"
        )
    print(
        f"{label:34s} speed-up {mins['unfused'] / mins['fused']:.2f}x (min), "
        f"{meds['unfused'] / meds['fused']:.2f}x (median)"
    )


def epilogue_alone(rounds: int, repeats: int) -> None:
    shapes = [(1, 512, 16), (1, 256, 64), (1, 128, 128), (1, 64, 256), (4, 64, 256)]
    for batch, channels, size in shapes:
        torch.manual_seed(0)
        layout = torch.channels_last
        x = torch.randn(batch, channels, size, size).to(torch.bfloat16)
        x = x.contiguous(memory_format=layout)
        shift = (0.3 * torch.randn(1, channels, size, size)).contiguous(memory_format=layout)
        style = 0.5 * torch.randn(batch, 2 * channels)
        dy = torch.randn(batch, channels, size, size).contiguous(memory_format=layout)
        times: dict[str, list[float]] = {k: [] for k in SIDES}
        for _ in range(rounds):
            for name, fn in SIDES.items():
                for i in range(repeats + 1):
                    a = x.detach().requires_grad_(True)
                    s = style.detach().requires_grad_(True)
                    start = time.perf_counter()
                    fn(a, shift, s).backward(dy)
                    if i:  # the first call of each round warms caches up
                        times[name].append(time.perf_counter() - start)
        summary(times, f"epilogue {batch}x{channels}x{size}x{size} fwd+bwd")


def inversion_steps(bundle, resolution: int, rounds: int, steps: int, label: str) -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 3, resolution, resolution) * 2 - 1
    settings = InversionSettings(steps=steps, precision="bf16")
    times: dict[str, list[float]] = {k: [] for k in SIDES}
    try:
        for _ in range(rounds):
            for name, fn in SIDES.items():
                generator_module.fused_epilogue = fn
                stamps: list[float] = []
                invert(
                    bundle, x, settings, callback=lambda _, s=stamps: s.append(time.perf_counter())
                )
                # the first step also builds the bf16 copies and oneDNN primitives: excluded
                times[name] += [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    finally:
        generator_module.fused_epilogue = fused_epilogue
    summary(times, f"bf16 inversion step, {label}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=5, help="epilogue calls per round")
    parser.add_argument("--steps", type=int, default=6, help="inversion steps per run")
    parser.add_argument("--resolution", type=int, default=256, help="random-weight generator")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()  # as invert() does: no page faults on reused activation memory
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU bf16 side by side")
    epilogue_alone(args.rounds, args.repeats)

    from idinvert.core.modeldir import ImageConfig, ModelBundle, ModelConfig, freeze
    from idinvert.hub.api import load_model

    g, e, p = build_networks(args.resolution)
    config = ModelConfig("bench", g.config, e.config, p.config, ImageConfig(args.resolution))
    bundle = ModelBundle(config, g, e, p)
    for net in bundle.networks():
        freeze(net)
    r = args.resolution
    inversion_steps(bundle, r, args.rounds, args.steps, f"{r} px random weights")
    bundled = load_model(None, "cpu")
    res = bundled.config.image.resolution
    inversion_steps(bundled, res, args.rounds, 5 * args.steps, f"bundled {res} px")


if __name__ == "__main__":
    main()
