"""Helpers shared by the A/B benchmarks (``fused_epilogue.py``, ``reordered_conv.py``): the
models both time, interleaved whole-step timing of bf16 inversions with one change switched
on and off, and the printed summary (min and median of each side, and their ratios)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from idinvert.core.inversion import InversionSettings, invert
from idinvert.core.runtime import tune_cpu_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inversion import build_networks  # noqa: E402


@contextlib.contextmanager
def swapped(module: object, name: str, value: object) -> Iterator[None]:
    """``module.name`` is ``value`` inside the block (the other side of an A/B)."""
    original = getattr(module, name)
    try:
        setattr(module, name, value)
        yield
    finally:
        setattr(module, name, original)


def swap_sides(module: object, name: str, values: dict[str, object]) -> dict[str, Callable]:
    """Side name → a context in which ``module.name`` is that side's value."""
    return {side: functools.partial(swapped, module, name, value) for side, value in values.items()}


def parse_args(description: str, what_repeats: str) -> argparse.Namespace:
    """The A/B benchmarks' command line; applies ``--threads`` and the allocator tuning that
    :func:`invert` applies (no page faults on reused activation memory)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=5, help=f"{what_repeats} per round")
    parser.add_argument("--steps", type=int, default=6, help="inversion steps per run")
    parser.add_argument("--resolution", type=int, default=256, help="random-weight generator")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    return args


def time_sides(
    sides: dict[str, Callable[..., torch.Tensor]],
    inputs: list[torch.Tensor],
    grad_out: torch.Tensor,
    rounds: int,
    repeats: int,
) -> dict[str, list[float]]:
    """Seconds of ``side(*inputs).backward(grad_out)`` per call, fresh leaf copies of
    ``inputs`` (gradients for all of them), the sides alternating round after round; the
    first call of each round (caches, oneDNN primitives) is not counted."""
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            for i in range(repeats + 1):
                leaves = [t.detach().requires_grad_(True) for t in inputs]
                start = time.perf_counter()
                fn(*leaves).backward(grad_out)
                if i:
                    times[name].append(time.perf_counter() - start)
    return times


def summary(times: dict[str, list[float]], label: str) -> None:
    """One line per side plus the ratios (first side / each later side) of minima and
    medians."""
    mins = {k: min(v) for k, v in times.items()}
    meds = {k: statistics.median(v) for k, v in times.items()}
    for key in times:
        print(
            f"{label:40s} {key:10s} min {mins[key] * 1e3:8.2f} ms  median {meds[key] * 1e3:8.2f} ms"
        )
    before, *afters = list(times)
    for after in afters:
        versus = f" ({after} vs {before})" if len(afters) > 1 else ""
        print(
            f"{label:40s} speed-up {mins[before] / mins[after]:.2f}x (min), "
            f"{meds[before] / meds[after]:.2f}x (median){versus}"
        )


def inversion_steps(
    bundle,
    rounds: int,
    steps: int,
    label: str,
    sides: dict[str, Callable[[], AbstractContextManager]],
    batch: int = 1,
    precision: str = "bf16",
) -> None:
    """Time inversion steps of ``bundle`` under each side's context, the sides alternating
    round after round; the first step of each run (bf16 copies, oneDNN primitives) is
    excluded. Per image when ``batch`` > 1."""
    resolution = bundle.resolution
    torch.manual_seed(1)
    x = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    settings = InversionSettings(steps=steps, precision=precision)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, context in sides.items():
            stamps: list[float] = []
            with context():
                invert(
                    bundle, x, settings, callback=lambda _, s=stamps: s.append(time.perf_counter())
                )
            times[name] += [(b - a) / batch for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    per = f", batch {batch} per image" if batch > 1 else ""
    summary(times, f"{precision} inversion step{per}, {label}")


def benchmark_models(resolution: int) -> list[tuple[object, str, int]]:
    """(bundle, label, steps multiplier): ffhq256-sized random weights at ``resolution``
    (as ``benchmarks/inversion.py``) and the bundled model (5× the steps: its steps are short)."""
    from idinvert.core.modeldir import ImageConfig, ModelBundle, ModelConfig, freeze
    from idinvert.hub.api import load_model

    g, e, p = build_networks(resolution)
    config = ModelConfig("bench", g.config, e.config, p.config, ImageConfig(resolution))
    bundle = ModelBundle(config, g, e, p)
    for net in bundle.networks():
        freeze(net)
    bundled = load_model(None, "cpu")
    return [
        (bundle, f"{resolution} px random weights", 1),
        (bundled, f"bundled {bundled.resolution} px", 5),
    ]
