"""The encoder's dense layer for batches: oneDNN's matrix product vs torch's (MKL), side by side.

Run by hand (not in CI)::

    python benchmarks/batched_dense.py [--rounds 3] [--steps 4] [--resolution 256]

* the product alone, forward and input gradient, float32, at the ffhq256 encoder's size
  (16384 → 7168) for 1, 2, 4 and 8 rows: ``F.linear`` ("mkl") against
  :func:`idinvert.core.models.frozen_linear.frozen_linear` ("onednn"; 1 row is ``F.linear``);
* whole inversion steps at batch 4, per image, fp32 and bf16, on ffhq256-sized random weights
  (as ``benchmarks/inversion.py``), with the encoder's dense layer on ``F.linear`` for the
  "mkl" side.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import idinvert.core.models.encoder as encoder_module
from idinvert.core.models.frozen_linear import frozen_linear

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as ab  # noqa: E402

SIDES = {"mkl": F.linear, "onednn": frozen_linear}


def product_alone(rounds: int, repeats: int) -> None:
    torch.manual_seed(0)
    weight = torch.randn(7168, 16384) / 128.0
    for rows in (1, 2, 4, 8):
        x = torch.randn(rows, 16384)
        dy = torch.randn(rows, 7168)
        sides = {name: (lambda a, fn=fn: fn(a, weight)) for name, fn in SIDES.items()}
        times = ab.time_sides(sides, [x], dy, rounds, repeats)
        ab.summary(times, f"dense 16384->7168, {rows} row(s), fwd+bwd")


def main() -> None:
    args = ab.parse_args(__doc__, "products")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    product_alone(args.rounds, args.repeats)
    sides = ab.swap_sides(encoder_module, "frozen_linear", SIDES)
    bundle, label, _ = ab.benchmark_models(args.resolution)[0]
    for precision in ("fp32", "bf16"):
        ab.inversion_steps(bundle, args.rounds, args.steps, label, sides, 4, precision)


if __name__ == "__main__":
    main()
