"""Inversion speed: idinvert vs a faithful re-creation of the official loop, side by side.

Run by hand (not in CI)::

    python benchmarks/inversion.py [--resolution 256] [--rounds 3] [--iters 2] [--warmup 1]

Both sides use the same random ffhq256-sized weights (generator 29.5 M params, encoder 165 M,
VGG16 to conv4_3) and the same objective (pixel + 5e-5·VGG + 2·domain, Adam lr 0.01). The
reference loop follows ``StyleGANInverter.invert`` step by step: batch 1, the target's VGG
features recomputed every iteration, and every network parameter left with
``requires_grad=True`` so backward also computes (and accumulates) weight gradients.
The reference runs in a child process (a fresh interpreter, like the official script), ours in
this one; rounds are interleaved because shared hosts vary several-fold within minutes.
Printed: seconds per iteration per image for each side and the speed-up ratios, plus a check
that both reach the same objective (within 1 %). ``--precision fp32,bf16`` (default) also
times idinvert with bfloat16 networks (``InversionSettings(precision="bf16")``; fast on CPUs
with AMX / AVX-512 BF16). Random weights make a chaotic landscape on which any change of
arithmetic sends Adam down another path within a few steps, so bf16's objective is checked
where it means something: full 100-step inversions of held-out renders on the trained bundled
model, fp32 vs bf16, mean final objective within 1 % (``--check-images``, 0 skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from idinvert.core.inversion import InversionSettings, invert, objective
from idinvert.core.modeldir import ImageConfig, ModelBundle, ModelConfig, freeze
from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.perceptual import PerceptualConfig, PerceptualNet


def build_networks(resolution: int, seed: int = 0) -> tuple[Generator, Encoder, PerceptualNet]:
    """ffhq256-sized networks (scaled to ``resolution``) with random weights."""
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(resolution=resolution))
    e = Encoder(EncoderConfig(resolution=resolution))
    p = PerceptualNet(PerceptualConfig())
    with torch.no_grad():
        for name, param in e.named_parameters():
            if name.endswith("fc.weight"):
                param.normal_()
        for module in e.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.fill_(4.0)
        for param in p.parameters():
            param.mul_(0.5)
    return g.eval(), e.eval(), p.eval()


def official_loop(
    g: Generator, e: Encoder, p: PerceptualNet, x: torch.Tensor, steps: int, s: InversionSettings
) -> tuple[torch.Tensor, float, list[float]]:
    """The official ``invert()`` op for op: networks keep requires_grad, F(x) every step.

    Returns the final code ``[1, L, D]``, the last loss and per-iteration seconds.
    """
    for net in (g, e, p):
        for param in net.parameters():
            param.requires_grad_(True)
    z = e(x).view(1, g.num_layers, -1).detach().clone()  # official: E(x) as numpy, then Tensor
    z.requires_grad = True
    optimizer = torch.optim.Adam([z], lr=s.learning_rate)
    times, loss_value = [], float("nan")
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = 0.0
        x_rec = g.synthesis(z)
        loss_pix = torch.mean((x - x_rec) ** 2)
        loss = loss + loss_pix * s.pixel_weight
        x_feat = p(x)
        x_rec_feat = p(x_rec)
        loss_feat = torch.mean((x_feat - x_rec_feat) ** 2)
        loss = loss + loss_feat * s.perceptual_weight
        z_rec = e(x_rec).view(1, g.num_layers, -1)
        loss_reg = torch.mean((z - z_rec) ** 2)
        loss = loss + loss_reg * s.domain_weight
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
        loss_value = float(loss.detach())
    return z.detach(), loss_value, times


def ours(
    bundle: ModelBundle, x: torch.Tensor, steps: int, s: InversionSettings, compile_step: bool
) -> tuple[torch.Tensor, list[float], list[float]]:
    """idinvert's :func:`invert`; returns codes, last per-sample losses, per-step seconds."""
    stamps: list[float] = []
    start = time.perf_counter()
    result = invert(
        bundle,
        x,
        s.with_(steps=steps),
        callback=lambda info: stamps.append(time.perf_counter()),
        compile_step=compile_step,
    )
    times = [b - a for a, b in zip([start] + stamps[:-1], stamps, strict=True)]
    return result.codes, result.history["total"][-1].tolist(), times


def run_reference_process(args: argparse.Namespace) -> tuple[torch.Tensor, float, list[float]]:
    """Run the official-equivalent loop in a fresh Python process, as the official script runs
    (idinvert's process-level allocator tuning must not help the reference)."""
    cmd = [
        sys.executable,
        __file__,
        "--reference-only",
        "--resolution",
        str(args.resolution),
        "--iters",
        str(args.iters),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    env = {**os.environ, "IDINVERT_MALLOC_TUNING": "0"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return torch.tensor(data["code"]), float(data["loss"]), list(data["times"])


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per side and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first iterations per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (noisy hosts)")
    parser.add_argument("--batch", type=int, default=4, help="batch size of the batched run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument(
        "--precision", default="fp32,bf16", help="idinvert precisions to time (comma-separated)"
    )
    parser.add_argument(
        "--check-images",
        type=int,
        default=8,
        help="held-out renders for the bf16 objective check on the bundled model (0 = skip)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or mps (both sides run there; one command for a GPU machine: "
        "python benchmarks/inversion.py --device cuda --batch 16 --check-images 0 --compile)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time idinvert with compile_step=True (torch.compile; CUDA graphs on CUDA); "
        "the first run of each side compiles and is excluded (use --warmup >= 1)",
    )
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = InversionSettings()
    device = torch.device(args.device)
    g, e, p = (net.to(device) for net in build_networks(args.resolution))
    r = args.resolution
    torch.manual_seed(1)
    targets = (torch.rand(args.batch, 3, r, r) * 2 - 1).to(device)
    steps = args.warmup + args.iters
    if args.reference_only:
        z_ref, loss_ref, t_ref = official_loop(g, e, p, targets[:1], steps, settings)
        code = z_ref.flatten().cpu().tolist()
        print(json.dumps({"times": t_ref, "loss": loss_ref, "code": code}))
        return
    config = ModelConfig("bench", g.config, e.config, p.config, ImageConfig(r))
    bundle = ModelBundle(config, g, e, p)
    for net in bundle.networks():
        freeze(net)

    # Shared hosts vary several-fold within minutes: the three sides run interleaved, round
    # after round, and each side's per-iteration times are pooled; the minimum (the quietest
    # window each side got) and the median are both reported.
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    compile_modes = (False, True) if args.compile else (False,)
    sides = [(prec, b, c) for prec in precisions for b in (1, args.batch) for c in compile_modes]
    if args.compile:  # compile every side once, untimed (one compilation per shape)
        for prec, b, c in sides:
            if c:
                ours(bundle, targets[:b], 2, settings.with_(precision=prec), True)
    times: dict[str, list[float]] = {"official": [], **{_key(*side): [] for side in sides}}
    results: dict[str, tuple[torch.Tensor, float]] = {}
    for _ in range(args.rounds):
        z_ref, loss_ref, t_ref = run_reference_process(args)
        times["official"] += t_ref[args.warmup :]
        for prec, b, c in sides:
            z, loss, t = ours(bundle, targets[:b], steps, settings.with_(precision=prec), c)
            times[_key(prec, b, c)] += [v / b for v in t[args.warmup :]]
            results[_key(prec, b, c)] = (z, loss[0])

    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"resolution {r}, {args.rounds} interleaved rounds x {args.iters} timed iterations"
    )
    short = {
        _key(p, b, c): f"{p}, batch {b}" + (" (per image)" * (b > 1)) + (", compiled" * c)
        for p, b, c in sides
    }
    labels = {"official": "official-equivalent loop, batch 1"}
    labels.update({k: f"idinvert {v}" for k, v in short.items()})
    for key, label in labels.items():
        print(
            f"{label:36s}: min {min(times[key]):.3f}  "
            f"median {median(times[key]):.3f} s/iteration/image"
        )
    for prec in precisions:  # the Space-facing figures (issue targets: GPU, 256 px)
        for c in compile_modes:
            one, many = min(times[_key(prec, 1, c)]), min(times[_key(prec, args.batch, c)])
            print(
                f"{prec}{', compiled' * c}: a 100-step inversion ≈ {100 * one:.2f} s at batch "
                f"1; ≈ {1 / (100 * many):.3g} images/s at batch {args.batch} (from the minima)"
            )
    if device.type == "cpu":
        print_flop_floors(bundle, targets[:1], settings, precisions)
    for stat, fn in (("min", min), ("median", median)):
        ref = fn(times["official"])
        cells = ", ".join(f"{label} {ref / fn(times[k]):.2f}x" for k, label in short.items())
        print(f"speed-up ({stat}): {cells}")
    # the objective each side reached, evaluated the same way (float32) at its final code
    final_ref = float(objective(bundle, targets[:1], z_ref.view(1, *bundle.code_shape), settings))
    worst = 0.0
    for key, (z, _) in results.items():
        final = float(objective(bundle, targets[:1], z[:1], settings))
        rel = abs(final - final_ref) / abs(final_ref)
        if key.startswith("fp32"):
            worst = max(worst, rel)
        code_diff = float((z[:1].flatten() - z_ref).abs().max())
        print(
            f"same objective (fp32, final code): official {final_ref:.5f}, "
            f"{short[key]} {final:.5f} (rel {rel:.2e}); max |code diff| {code_diff:.2e}"
            + ("  [random weights: see the trained-model check]" * key.startswith("bf16"))
        )
    if worst > 0.01:
        raise SystemExit("fp32 objective mismatch > 1 %: the comparison is invalid")
    if "bf16" in precisions and args.check_images > 0:
        bf16_objective_check(args.check_images, settings)


def print_flop_floors(
    bundle: ModelBundle, target: torch.Tensor, settings: InversionSettings, precisions: list[str]
) -> None:
    """The machine's floor per step: convolution/matmul FLOPs of one idinvert step (counted by
    ``torch.utils.flop_counter``, forward and backward) over the measured peak of a large
    matrix product in each precision on this device (all threads)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        invert(bundle, target, settings.with_(steps=1))
    init = FlopCounterMode(display=False)
    with init:
        invert(bundle, target, settings.with_(steps=0))
    step_flops = counter.get_total_flops() - init.get_total_flops()
    for prec in precisions:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[prec]
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        peak = 10 * 2 * 2048**3 / (time.perf_counter() - start)
        print(
            f"{prec} floor: {step_flops / 1e9:.0f} GFLOP per step (conv + matmul, fwd + bwd) / "
            f"{peak / 1e9:.0f} GFLOP/s (2048² matmul peak, this device) = "
            f"{step_flops / peak:.2f} s per step"
        )


def bf16_objective_check(n: int, settings: InversionSettings) -> None:
    """100-step inversions of ``n`` held-out renders on the bundled model, fp32 vs bf16, one
    image at a time (batch 1, as the demo and a single-photo ``idinvert invert`` run: a
    batch-of-one bug in the bf16 path once hid behind a batched check)."""
    import numpy as np

    from idinvert.hub.api import load_model
    from idinvert.training.faces import iter_faces

    bundle = load_model(None, "cpu")
    r = bundle.resolution
    arrays = np.stack([image for image, _ in iter_faces(seed=999, count=n, resolution=r)])
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1
    finals = {}
    for precision in ("fp32", "bf16"):
        codes = [
            invert(bundle, x[i : i + 1], settings.with_(precision=precision)).codes
            for i in range(n)
        ]
        finals[precision] = objective(bundle, x, torch.cat(codes), settings)
    rel = (finals["bf16"] - finals["fp32"]) / finals["fp32"]
    mean_rel = float(finals["bf16"].mean() / finals["fp32"].mean() - 1)
    print(
        f"bf16 on the trained {bundle.config.name} ({n} held-out renders one by one, "
        f"{settings.steps} steps): "
        f"mean objective fp32 {float(finals['fp32'].mean()):.5f}, bf16 "
        f"{float(finals['bf16'].mean()):.5f} (rel {mean_rel:+.2%}; per image "
        f"{float(rel.min()):+.2%} .. {float(rel.max()):+.2%})"
    )
    if abs(mean_rel) > 0.01:
        raise SystemExit("bf16 objective differs by > 1 % on the trained model")


def _key(precision: str, batch: int, compile_step: bool = False) -> str:
    return f"{precision}/b{batch}" + "/compiled" * compile_step


if __name__ == "__main__":
    main()
