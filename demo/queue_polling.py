"""How often Gradio's queue wakes up to look for work, set to what a small server can afford.

Gradio's queue runs two polling loops on the server's event loop: one looks for waiting events
every millisecond while nothing runs (``Queue.sleep_when_free``, 1 ms off Windows), one for
pending progress messages every 10 ms. On a 2-core CPU that is ~10 % of a core burnt by an idle
server, and during an inversion ~1000 wake-ups a second contend for the GIL with the compute
thread's Python between its operations. A queued event here is an inversion, an edit or a
sample (tens of milliseconds to seconds of computation), so picking it up within 10 ms instead
of 1 ms is not noticeable; the quick-edit sliders skip the queue altogether.

Measured with ``benchmarks/demo_latency.py`` (event-loop thread CPU of an idle server, which it
prints side by side for Gradio's values and these).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between the queue's looks for a waiting event while it has nothing to start.
QUEUE_POLL_S = 0.01

#: Seconds between the queue's looks for progress messages to send.
PROGRESS_POLL_S = 0.05


def set_queue_polling(
    blocks: Any, queue_poll_s: float = QUEUE_POLL_S, progress_poll_s: float = PROGRESS_POLL_S
) -> bool:
    """Set the polling intervals of ``blocks``' queue (after ``blocks.queue(...)``, before or
    after launch: the loops read them on every round).

    Returns:
        True when set; False when this Gradio's queue has no such settings (its own polling
        then stays as it is, and a log line says so).
    """
    if not (queue_poll_s > 0 and progress_poll_s > 0):
        raise ValueError(
            f"polling intervals must be > 0 s, got {queue_poll_s} and {progress_poll_s}"
        )
    queue = getattr(blocks, "_queue", None)
    names = ("sleep_when_free", "progress_update_sleep_when_free")
    if queue is None or not all(hasattr(queue, name) for name in names):
        log.info("this Gradio's queue has no polling settings: left at Gradio's own")
        return False
    queue.sleep_when_free = queue_poll_s
    queue.progress_update_sleep_when_free = progress_poll_s
    return True
