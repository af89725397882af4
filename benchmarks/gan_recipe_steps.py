"""CPU cost of one GAN training step per recipe (issue 12): adversarial fp32 / bf16, batch size,
renderer-as-teacher. Times ``train_step`` on pre-rendered reals, starting from the bundled
generator, after one warm-up step; reports wall and process CPU seconds per step.

Usage: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/gan_recipe_steps.py [--steps 4] [--threads 2]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch


def main() -> None:
    """Print one JSON line per recipe."""
    from idinvert.training.distributed import DistContext
    from idinvert.training.gan import (
        GanTrainConfig,
        TrainState,
        build_networks,
        load_init_generator,
        make_optimizers,
        train_step,
        uint8_to_float,
    )
    from idinvert.training.teacher import load_shallow_vgg, render_latents, step_latents

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="hub/bundled/faces64")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ctx = DistContext.from_env()
    recipes = {
        "adv_fp32_b32": {},
        "adv_bf16_b32": {"bf16": True},
        "adv_fp32_b64": {"batch_size": 64},
        "teacher_fp32_b32": {"teacher_weight": 1.0, "style_mixing_prob": 0.5},
        "teacher_bf16_b32": {"teacher_weight": 1.0, "style_mixing_prob": 0.5, "bf16": True},
        "teacher_l1only_fp32_b32": {
            "teacher_weight": 1.0,
            "teacher_perceptual": 0.0,
            "style_mixing_prob": 0.5,
        },
    }
    for name, kw in recipes.items():
        if args.only and name not in args.only:
            continue
        cfg = dataclasses.replace(GanTrainConfig(), **kw)
        G, G_ema, D = build_networks(cfg)
        load_init_generator(args.model, G, G_ema)
        for net in (G, G_ema, D):
            net.to(memory_format=torch.channels_last)
        state = TrainState(G, G_ema, D, *make_optimizers(cfg, G, D))
        perceptual = load_shallow_vgg() if cfg.teacher_weight and cfg.teacher_perceptual else None
        z = step_latents(0, 0, cfg.batch_size, cfg.z_dim)
        reals = uint8_to_float(torch.from_numpy(render_latents(z)))
        zt = torch.from_numpy(z) if cfg.teacher_weight else None
        walls, cpus = [], []
        for i in range(args.steps + 1):
            state.step = i + 1  # R1 only where step % 16 == 0: not timed here
            t, c = time.perf_counter(), time.process_time()
            train_step(state, reals, cfg, ctx, zt, perceptual)
            if i:
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
        n = cfg.batch_size
        print(
            json.dumps(
                {
                    "recipe": name,
                    "batch": n,
                    "wall_s_per_step": round(min(walls), 3),
                    "cpu_s_per_step": round(min(cpus), 3),
                    "cpu_ms_per_image": round(1000 * min(cpus) / n, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
