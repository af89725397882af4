"""Demo latency: slider-to-image (re-synthesis only) and inversion time at the default steps.

Run by hand (not in CI)::

    python benchmarks/demo_latency.py [--model REF] [--repeats 30] [--steps 100]

Measures the two paths the demo takes, on the same loaded model:

* quick edit: ``service.quick_edit`` (boundary moves + one synthesis + uint8 conversion), the
  work behind every slider move, and the same call through a running Gradio server with
  ``gradio_client`` (adds HTTP, queueing and PNG encoding);
* inversion: ``service.invert_image`` at the default steps (encoder + optimization).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from idinvert.core.boundaries import load_boundary, model_boundaries
from idinvert.demo import service
from idinvert.hub.api import load_model


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    bundle = load_model(args.model, args.device)
    boundaries = {n: load_boundary(p) for n, p in model_boundaries(bundle.path).items()}
    codes, _ = service.sample_code(bundle, 0)
    names = list(boundaries)
    direct = []
    for i in range(args.repeats + 3):
        strengths = {n: (i % 7 - 3) * 0.5 for n in names[:1]}
        t0 = time.perf_counter()
        service.quick_edit(bundle, codes, boundaries, strengths)
        if i >= 3:
            direct.append(time.perf_counter() - t0)
    print(
        f"model {bundle.config.name}: {bundle.resolution}px, "
        f"W+ {bundle.num_layers}x{bundle.w_dim}, "
        f"{len(boundaries)} boundaries"
    )
    print(
        f"quick edit (library)      median {statistics.median(direct) * 1e3:6.1f} ms, "
        f"p90 {percentile(direct, 90) * 1e3:6.1f} ms"
    )

    if boundaries:
        from gradio_client import Client, handle_file

        from idinvert.demo.app import build_demo, launch_kwargs

        blocks = build_demo(args.model, args.device, examples=[])
        blocks.launch(
            server_name="127.0.0.1",
            server_port=7897,
            prevent_thread_lock=True,
            quiet=True,
            **launch_kwargs(),
        )
        try:
            client = Client("http://127.0.0.1:7897/", verbose=False)
            client.predict(0, api_name="/sample")
            served = []
            for i in range(args.repeats + 3):
                values = [((i % 7) - 3) * 0.5] + [0.0] * (len(names) - 1)
                t0 = time.perf_counter()
                client.predict(*values, api_name="/quick_edit")
                if i >= 3:
                    served.append(time.perf_counter() - t0)
            print(
                f"quick edit (gradio_client) median {statistics.median(served) * 1e3:6.1f} ms, "
                f"p90 {percentile(served, 90) * 1e3:6.1f} ms"
            )
            photo = Path(tempfile.mkdtemp()) / "photo.png"
            Image.fromarray(
                np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
            ).save(photo)
            t0 = time.perf_counter()
            client.predict(handle_file(str(photo)), args.steps, False, api_name="/invert")
            print(
                f"invert via gradio_client ({args.steps} steps): {time.perf_counter() - t0:.2f} s"
            )
        finally:
            blocks.close()

    image = service.sample_code(bundle, 1)[1]
    t0 = time.perf_counter()
    out = service.invert_image(bundle, image, args.steps)
    print(
        f"inversion (library, {args.steps} steps): {time.perf_counter() - t0:.2f} s "
        f"(optimization {out.seconds:.2f} s), MSE {out.mse:.4f}"
    )


if __name__ == "__main__":
    main()
