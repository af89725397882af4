"""Many short concurrent sessions against a real server: no call lost (every result file
arrives whole, even when many clients get identical results at once), per-session state and
files released when sessions expire, resident memory back near its warmed-up level.

The default suite runs a short variant; ``-m slow`` runs the long soak and prints its memory
figures (``IDINVERT_SOAK_SESSIONS`` sets its length)."""

from __future__ import annotations

import gc
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from plugins_fixtures import launch_demo, random_photos  # noqa: E402

TTL_S = 2
GRACE_S = 4


def rss_mb() -> float:
    """Resident memory of this process (server and clients) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _trim() -> None:
    """Return freed heap to the OS where glibc allows, so RSS reflects live memory."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _server(model_dir: Path, ttl_s: int, grace_s: int):
    from idinvert.demo.service import DemoLimits

    limits = DemoLimits(
        max_steps=5,
        default_steps=2,
        concurrency=2,
        session_ttl_s=ttl_s,
        result_grace_s=grace_s,
        max_sessions=50,
    )
    return launch_demo(model_dir, limits)


@pytest.fixture
def soak_server(demo_model_dir):
    blocks, url = _server(demo_model_dir, TTL_S, GRACE_S)
    yield blocks, url
    blocks.close()


def _session(url: str, photo: Path, i: int) -> list[str]:
    """One visitor: invert (2 steps), sample (the same seed as everyone), quick edit, an edit
    → problems found (empty = every call answered and every file arrived whole)."""
    problems = []
    c = Client(url, verbose=False)
    try:
        out = c.predict(handle_file(str(photo)), 2, False, api_name="/invert")
        for path in (out[0], out[1], out[2], out[6]):
            Image.open(path).load()
        if np.load(out[5]).shape != (1, 8, 16):
            problems.append(f"{i}: codes of invert")
        out = c.predict(3, api_name="/sample")
        Image.open(out[2]).load()
        np.load(out[5])
        edited, _ = c.predict(0.5, 0.0, api_name="/quick_edit")
        Image.open(edited).load()
        gallery, gif, codes = c.predict("smile", [], -1, 1, 3, False, api_name="/edit_manipulate")
        Image.open(gif).load()
        if len(gallery) != 3 or np.load(codes).shape != (1, 3, 8, 16):
            problems.append(f"{i}: manipulate result")
    except Exception as exc:  # noqa: BLE001 - a lost call is what this test counts
        problems.append(f"{i}: {type(exc).__name__}: {exc}")
    finally:
        c.close()
    return problems


def _run(url: str, photos: list[Path], sessions: int, workers: int) -> list[str]:
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda i: _session(url, photos[i % len(photos)], i), range(sessions))
        return [p for r in results for p in r]


def _live_folders(blocks) -> list[Path]:
    """The server's session folders (one per session whose files are kept)."""
    return [d for d in blocks.demo_app.results.root.iterdir() if d.is_dir()]


def _wait_released(blocks, timeout: float) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = _live_folders(blocks)
        if not left:
            return []
        time.sleep(0.5)
    return _live_folders(blocks)


def test_short_concurrent_sessions_lose_nothing_and_are_released(soak_server, tmp_path):
    blocks, url = soak_server
    photos = list(random_photos(tmp_path, {f"p{i}": (40, 40) for i in range(4)}, 3).values())
    problems = _run(url, photos, sessions=8, workers=4)
    assert problems == []
    assert _live_folders(blocks)  # the latest sessions still hold their result files
    # state expires TTL_S after the last action; its folder goes GRACE_S after its last file
    assert _wait_released(blocks, TTL_S + GRACE_S + 10) == []


@pytest.mark.slow
def test_soak_many_sessions_memory_returns_near_warm_level(demo_model_dir, tmp_path):
    """Realistic timing: a state lives 5 s after its session's last action, files 15 s after
    they were written (a loaded server may be slow to hand them out)."""
    ttl, grace = 5, 15
    blocks, url = _server(demo_model_dir, ttl, grace)
    try:
        _soak(blocks, url, tmp_path, ttl + grace)
    finally:
        blocks.close()


def _soak(blocks, url: str, tmp_path: Path, release_s: int) -> None:
    sessions = int(os.environ.get("IDINVERT_SOAK_SESSIONS", "240"))
    photos = list(random_photos(tmp_path, {f"p{i}": (48, 48) for i in range(16)}, 4).values())
    assert _run(url, photos, sessions=16, workers=8) == []  # warm-up
    _wait_released(blocks, release_s + 10)
    _trim()
    warm = rss_mb()
    peak = warm
    lost: list[str] = []
    t0 = time.monotonic()
    for _ in range(0, sessions, 40):
        lost += _run(url, photos, sessions=40, workers=8)
        peak = max(peak, rss_mb())
    seconds = time.monotonic() - t0
    left = _wait_released(blocks, release_s + 15)
    _trim()
    end = rss_mb()
    print(
        f"\nsoak: {sessions} sessions x 4 calls in {seconds:.0f} s, lost {len(lost)}; "
        f"RSS warmed-up {warm:.0f} MB, peak {peak:.0f} MB, end {end:.0f} MB "
        f"({(end / warm - 1) * 100:+.1f} %); session folders left {len(left)}"
    )
    assert lost == []
    assert left == []
    assert end <= 1.3 * warm
