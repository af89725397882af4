"""KID/FID of GAN runs' EMA generators (and model directories) against one cached set of
held-out renders, for comparing recipes on short runs (issue 12).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gan_recipe_kid.py --n 2000 \\
        --cache /work/runs/render_feats_2000.npz hub/bundled/faces64 /work/runs/short/A_adv ...

Each argument is a model directory (``generator.safetensors``) or a GAN run directory
(``checkpoint.pt``; its EMA generator is used). Prints one JSON line per argument: KID (mean and
std over subsets), FID, the run's kimg, training wall seconds and the classifier's mean label-rate
gap (with ``--classifier``). Features: :data:`idinvert.training.gan_metrics.FEATURE_SPEC`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def _generator(path: Path) -> tuple[torch.nn.Module, dict]:
    from idinvert.core.modeldir import load_model_dir
    from idinvert.training.gan import CHECKPOINT_FILE, export_generator, load_checkpoint

    if (path / CHECKPOINT_FILE).is_file():
        ckpt = load_checkpoint(path / CHECKPOINT_FILE)
        info = {"kimg": round(ckpt["nimg"] / 1000, 2), "train_sec": round(ckpt["elapsed_sec"])}
        return export_generator(path), info
    return load_model_dir(path).generator, {}


def main() -> None:
    """Evaluate every argument; see the module docstring."""
    from idinvert.training.classifier import load_classifier
    from idinvert.training.gan_metrics import (
        GeneratorEvalConfig,
        generator_quality,
        load_vgg_features,
        render_set_features,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="npz of the renders' features")
    ap.add_argument("--classifier", type=Path, default=Path("hub/bundled/faces64"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = GeneratorEvalConfig(n=args.n)
    net = load_vgg_features(cfg.image_size)
    clf, _ = load_classifier(args.classifier, "cpu")
    from idinvert.training.classifier import predict_logits

    def cls_fn(x: torch.Tensor) -> torch.Tensor:
        return predict_logits(clf, x)

    if args.cache is not None and args.cache.is_file():
        d = np.load(args.cache)
        renders = (d["feat"], d["pred"], d["true"], list(d["names"]))
    else:
        renders = render_set_features(net, cfg, cls_fn)
        if args.cache is not None:
            np.savez(
                args.cache, feat=renders[0], pred=renders[1], true=renders[2], names=renders[3]
            )
    for path in args.paths:
        G, info = _generator(path)
        r = generator_quality(G, cfg, net, clf, render_features=renders)
        print(
            json.dumps(
                {
                    "path": str(path),
                    **info,
                    "kid": round(r["kid"], 5),
                    "kid_std": round(r["kid_std"], 5),
                    "fid": round(r["fid"], 2),
                    "label_gap": r["labels"]["mean_gap"],
                    "n": args.n,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
