"""The demo server's Gradio queue polls for work every 10 ms, not every millisecond."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402
from plugins_fixtures import launch_demo  # noqa: E402

from idinvert.demo.queue_polling import QUEUE_POLL_S, set_queue_polling  # noqa: E402


def _count_polls(queue: Any) -> list[int]:
    """Count the queue loop's reads of its polling interval (one per idle round) from now on."""
    reads = [0]
    base = type(queue)

    def get(self: Any) -> float:
        reads[0] += 1
        return self.__dict__["sleep_when_free"]

    def put(self: Any, value: float) -> None:
        self.__dict__["sleep_when_free"] = value

    queue.__class__ = type("CountingQueue", (base,), {"sleep_when_free": property(get, put)})
    return reads


def test_idle_server_wakes_its_queue_at_most_every_10_ms(demo_model_dir):
    blocks, url = launch_demo(demo_model_dir)
    try:
        queue = blocks._queue
        assert queue.sleep_when_free == QUEUE_POLL_S
        reads = _count_polls(queue)
        time.sleep(0.3)
        start_reads, start = reads[0], time.monotonic()
        time.sleep(1.0)
        rounds, seconds = reads[0] - start_reads, time.monotonic() - start
        # each idle round sleeps >= 10 ms: at most ~100 a second (Gradio's 1 ms: ~1000)
        assert 0 < rounds <= seconds / QUEUE_POLL_S + 3, rounds
        # queued events are still picked up
        out = Client(url, verbose=False).predict(3, api_name="/sample")
        assert np.load(out[5]).shape[0] == 1
    finally:
        blocks.close()


def test_bad_intervals_and_queues_without_settings():
    with pytest.raises(ValueError, match="> 0 s"):
        set_queue_polling(object(), 0.0)

    class NoQueue:
        _queue = object()

    assert set_queue_polling(NoQueue()) is False
