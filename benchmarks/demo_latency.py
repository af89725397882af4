"""Demo latency: slider-to-image (re-synthesis only) and inversion time at the default steps.

Run by hand (not in CI)::

    python benchmarks/demo_latency.py [--model REF] [--repeats 30] [--steps 100]

Measures the two paths the demo takes, on the same loaded model:

* quick edit: ``service.quick_edit`` (boundary moves + one synthesis + uint8 conversion), the
  work behind every slider move, and the same call through a running Gradio server, twice:
  over plain HTTP the way the browser sends a non-queued event (``POST /gradio_api/run/...``
  with a session hash, then ``GET`` of the returned PNG), and with ``gradio_client``, whose own
  polling (50 ms sleeps in its worker threads) puts a ~100 ms floor under every call, whatever
  the server does (``gradio's own floor`` below measures it on a do-nothing endpoint);
* inversion through the server (its compute thread, the demo's precision) and in the library
  (fp32 and the demo's precision) at the default steps; a slider's latency while another
  client's inversion runs;
* the CPU an idle server's event loop uses, with Gradio's queue polling and the demo's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from idinvert.core.runtime import use_short_openmp_spinning

use_short_openmp_spinning()  # as `idinvert demo` does, before torch

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from idinvert.core.boundaries import load_boundary, model_boundaries  # noqa: E402
from idinvert.demo import service  # noqa: E402
from idinvert.hub.api import load_model  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def library_inversions(bundle, steps: int) -> None:
    """``service.invert_image`` in this thread, fp32 and the demo's precision."""
    image = service.sample_code(bundle, 1)[1]
    limits = service.DemoLimits()
    for precision in dict.fromkeys(("fp32", limits.precision_for(bundle.device))):
        service.invert_image(bundle, image, 2, precision=precision)  # warm-up
        t0 = time.perf_counter()
        out = service.invert_image(bundle, image, steps, precision=precision)
        print(
            f"inversion (library, {precision}, {steps} steps, this thread): "
            f"{time.perf_counter() - t0:.2f} s (optimization {out.seconds:.2f} s), "
            f"MSE {out.mse:.4f}"
        )


def library_part(args: argparse.Namespace) -> None:
    """Quick edit and inversions through ``idinvert.demo.service`` in this thread."""
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
    library_inversions(bundle, args.steps)


def http_quick_edits(base_url: str, n_sliders: int, repeats: int) -> tuple[list, list]:
    """Slider moves the way the browser sends them (a non-queued event is one ``POST
    /gradio_api/run/<api>`` carrying the session hash; the image is then fetched by URL).

    Returns:
        (seconds of POST + GET, seconds of the POST alone) per move, warm-up excluded.
    """
    import httpx

    session = {"session_hash": "latency-benchmark"}
    with httpx.Client(base_url=base_url, timeout=60) as http:
        # gr.State inputs travel as null; the server fills them from the session
        http.post("/gradio_api/run/sample", json={"data": [0, None], **session}).raise_for_status()
        total, posts = [], []
        for i in range(repeats + 3):
            values = [((i % 7) - 3) * 0.5] + [0.0] * (n_sliders - 1)
            t0 = time.perf_counter()
            body = {"data": [None, *values], **session}
            reply = http.post("/gradio_api/run/quick_edit", json=body)
            reply.raise_for_status()
            t1 = time.perf_counter()
            http.get(reply.json()["data"][0]["url"]).raise_for_status()
            if i >= 3:
                total.append(time.perf_counter() - t0)
                posts.append(t1 - t0)
    return total, posts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--part",
        choices=["both", "library", "server"],
        default="both",
        help="both (default) runs the library and the server part in two fresh processes: "
        "each process keeps the OpenMP team of every thread that computed, and a second team "
        "slows the other part",
    )
    args = parser.parse_args()
    if args.part == "both":
        import subprocess
        import sys

        for part in ("library", "server"):
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--part", part], check=True)
        return

    if args.part == "library":
        library_part(args)
        return
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
        idle_event_loop_cpu(blocks)
        client = Client("http://127.0.0.1:7897/", verbose=False)
        api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        names = [p["label"] for p in api["/quick_edit"]["parameters"]]
        total, posts = http_quick_edits("http://127.0.0.1:7897", len(names), args.repeats)
        print(
            f"quick edit (HTTP, as the browser: POST + image GET) median "
            f"{statistics.median(total) * 1e3:6.1f} ms, p90 {percentile(total, 90) * 1e3:6.1f} ms "
            f"(POST alone {statistics.median(posts) * 1e3:6.1f} ms)"
        )
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
        walls = []
        for _ in range(2):
            t0 = time.perf_counter()
            out = client.predict(handle_file(str(photo)), args.steps, False, api_name="/invert")
            walls.append(time.perf_counter() - t0)
        line = next(o for o in out if isinstance(o, str) and "In-domain" in o)
        print(
            f"invert via gradio_client ({args.steps} steps): "
            + ", ".join(f"{w:.2f} s" for w in walls)
            + f"  [{line.split('**In-domain inversion**')[1].split(')')[0].strip()})]"
        )
        busy = Client("http://127.0.0.1:7897/", verbose=False)
        running = threading.Thread(
            target=busy.predict,
            args=(handle_file(str(photo)), args.steps, False),
            kwargs={"api_name": "/invert"},
        )
        running.start()
        time.sleep(1.0)
        during = []
        while running.is_alive() and len(during) < args.repeats:
            t0 = time.perf_counter()
            client.predict(0.5, *[0.0] * (len(names) - 1), api_name="/quick_edit")
            during.append(time.perf_counter() - t0)
        running.join()
        if during:
            print(
                f"quick edit during an inversion: median "
                f"{statistics.median(during) * 1e3:6.1f} ms over {len(during)}"
            )
    finally:
        blocks.close()
    print(
        f"gradio's own floor (an endpoint returning a 64 px PNG file, no computation): "
        f"median {gradio_floor(args.repeats) * 1e3:6.1f} ms"
    )


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU seconds a thread of this process has used so far (Linux)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_event_loop_cpu(blocks, seconds: float = 5.0, rounds: int = 2) -> None:
    """CPU of the server's event-loop thread while no request runs, with Gradio's own queue
    polling (1 ms / 10 ms) and the demo's (:mod:`idinvert.demo.queue_polling`), interleaved."""
    from idinvert.demo.queue_polling import PROGRESS_POLL_S, QUEUE_POLL_S, set_queue_polling

    server = getattr(blocks, "server", None)
    thread = getattr(server, "thread", None)
    if thread is None or not Path("/proc/self/task").is_dir():
        print("idle event-loop CPU: not measurable here (no /proc or no server thread)")
        return
    settings = {"Gradio's (1 ms, 10 ms)": (0.001, 0.01), "demo's": (QUEUE_POLL_S, PROGRESS_POLL_S)}
    used: dict[str, list[float]] = {name: [] for name in settings}
    time.sleep(1.0)
    for _ in range(rounds):
        for name, (queue_s, progress_s) in settings.items():
            set_queue_polling(blocks, queue_s, progress_s)
            before = thread_cpu_seconds(thread.native_id)
            time.sleep(seconds)
            used[name].append((thread_cpu_seconds(thread.native_id) - before) / seconds)
    set_queue_polling(blocks)
    print(
        "idle server, event-loop CPU (share of one core): "
        + ", ".join(f"{name} polling {min(v) * 100:.1f} %" for name, v in used.items())
    )


def gradio_floor(repeats: int) -> float:
    """Median seconds of a do-nothing image endpoint through ``gradio_client``: what HTTP,
    the protocol and the file transfer cost on this machine, whatever the model."""
    import gradio as gr
    from gradio_client import Client

    folder = Path(tempfile.mkdtemp())
    image = Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8))

    def constant(_: float) -> str:
        path = folder / f"{time.perf_counter_ns()}.png"
        image.save(path)
        return str(path)

    with gr.Blocks() as blocks:
        value, out = gr.Number(), gr.Image(type="filepath")
        gr.Button().click(constant, value, out, api_name="constant", queue=False)
    blocks.launch(server_name="127.0.0.1", server_port=7896, prevent_thread_lock=True, quiet=True)
    try:
        client = Client("http://127.0.0.1:7896/", verbose=False)
        walls = []
        for i in range(repeats + 3):
            t0 = time.perf_counter()
            client.predict(i, api_name="/constant")
            walls.append(time.perf_counter() - t0)
        return statistics.median(walls[3:])
    finally:
        blocks.close()


if __name__ == "__main__":
    main()
