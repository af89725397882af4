"""Cold start: ``idinvert invert --steps 0`` of one photo vs just reading the model, side by side.

Run by hand (not in CI)::

    python benchmarks/cold_start.py [--rounds 5] [--model DIR]

Every measurement is a whole fresh process (interpreter start and imports included), timed
from the outside; rounds are interleaved because shared hosts vary several-fold within
minutes. Three processes per round:

* ``read+encode``: the floor — import torch, read ``generator``/``encoder``/``perceptual``
  safetensors, build the encoder and run one encoder pass on the photo (256 px);
* ``invert --steps 0 --no-align``: the whole command (model load, E(x), G(E(x)), LPIPS, PNGs,
  codes.npy, summary.json);
* ``invert --steps 0`` with the model's default FFHQ face alignment (dlib detection and
  landmarks) when the model declares it.

Without ``--model`` an ffhq256-sized model with random weights (generator 29.5 M parameters,
encoder 165 M, official-layout VGG16; ≈ 810 MB) is written once to a cache folder. The issue's
target: ``invert --steps 0`` within 1.5× of ``read+encode``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "data" / "reference" / "examples" / "000001.png"

READ_AND_ENCODE = """
import sys, torch
from safetensors.torch import load_file
import numpy as np
from PIL import Image
from idinvert.core.modeldir import read_model_config
from idinvert.core.models import assign_state, build_without_init
from idinvert.core.models.encoder import Encoder
d = sys.argv[1]
config = read_model_config(d)
states = {n: load_file(f"{d}/{n}.safetensors") for n in ("generator", "encoder", "perceptual")}
encoder = assign_state(build_without_init(lambda: Encoder(config.encoder)), states["encoder"])
img = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float32) / 127.5 - 1
with torch.no_grad():
    codes = encoder.eval()(torch.from_numpy(img).permute(2, 0, 1)[None])
print(tuple(codes.shape))
"""


def ensure_model(cache: Path) -> Path:
    """An ffhq256-sized random model directory (official layout converted), made once."""
    model = cache / "ffhq256-random"
    if (model / "config.json").is_file():
        return model
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from official_layout import (
        OfficialConfig,
        official_encoder_state,
        official_generator_state,
        official_vgg16_state,
    )

    from idinvert.hub.convert import convert_checkpoints

    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        t = Path(tmp)
        cfg = OfficialConfig()
        torch.save(official_generator_state(cfg, 1), t / "styleganinv_ffhq256_generator.pth")
        torch.save(official_encoder_state(cfg, 2), t / "styleganinv_ffhq256_encoder.pth")
        torch.save(official_vgg16_state(3), t / "vgg16.pth")
        convert_checkpoints(
            t / "styleganinv_ffhq256_generator.pth",
            t / "styleganinv_ffhq256_encoder.pth",
            model,
            perceptual_path=t / "vgg16.pth",
        )
    return model


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "idinvert-bench"
    )
    args = parser.parse_args()
    model = args.model or ensure_model(args.cache)
    idinvert = [sys.executable, "-m", "idinvert.cli.main", "invert", str(PHOTO), "--model"]
    runs = {
        "read+encode": lambda out: [sys.executable, "-c", READ_AND_ENCODE, str(model), str(PHOTO)],
        "invert --steps 0 --no-align": lambda out: [
            *idinvert,
            str(model),
            "--out",
            out,
            "--steps",
            "0",
            "--no-align",
        ],
        "invert --steps 0 (default alignment)": lambda out: [
            *idinvert,
            str(model),
            "--out",
            out,
            "--steps",
            "0",
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    timed(runs["read+encode"](""))  # warm the page cache
    for r in range(args.rounds):
        for name, make in runs.items():
            with tempfile.TemporaryDirectory() as tmp:
                times[name].append(timed(make(str(Path(tmp) / "out"))))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    floor_min, floor_med = min(times["read+encode"]), statistics.median(times["read+encode"])
    print(f"\nmodel: {model}")
    for name, values in times.items():
        lo, med = min(values), statistics.median(values)
        print(
            f"{name:38s} min {lo:6.2f}s  median {med:6.2f}s  "
            f"ratio to read+encode: min {lo / floor_min:4.2f}x  median {med / floor_med:4.2f}x"
        )


if __name__ == "__main__":
    main()
