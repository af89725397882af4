"""The demo's compute thread (demo/compute.py): one thread for every tensor computation, short
tasks first and between the steps of long ones."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
import torch

from idinvert.demo.compute import ComputeThread, InlineCompute

REQUEST = contextvars.ContextVar("REQUEST", default=None)


def test_calls_run_on_the_one_thread_and_raise_there():
    compute = ComputeThread(1, name="test-compute")
    names = {compute.call(lambda: threading.current_thread().name) for _ in range(3)}
    assert names == {"test-compute"}
    assert compute.call(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(KeyError, match="missing"):
        compute.call(lambda: {}["missing"])
    # from the compute thread itself a call runs at once instead of waiting for itself
    assert compute.call(lambda: compute.call(lambda: "inner")) == "inner"


def test_context_variables_travel_with_the_task():
    compute = ComputeThread(1)
    REQUEST.set("user-7")
    assert compute.call(REQUEST.get) == "user-7"


def test_short_tasks_run_between_the_steps_of_a_long_one():
    compute = ComputeThread(1)
    events: list[str] = []
    started = threading.Event()

    def inversion() -> None:
        started.set()
        for step in range(40):
            time.sleep(0.01)
            events.append(f"step{step}")
            compute.run_waiting_short()

    long_task = compute.submit(inversion)
    started.wait(5)
    queued_long = compute.submit(lambda: events.append("second inversion"))
    slider = compute.submit(lambda: events.append("slider"), short=True)
    assert slider.result(timeout=5) is None
    assert not long_task.done()  # the slider answered while the inversion still ran
    long_task.result(timeout=5)
    queued_long.result(timeout=5)
    assert 0 < events.index("slider") < events.index("step39")
    assert events[-1] == "second inversion"  # long tasks wait their turn
    assert compute.run_waiting_short() == 0  # off the compute thread: nothing to do


def test_short_tasks_go_before_waiting_long_ones():
    compute = ComputeThread(1)
    gate = threading.Event()
    order: list[str] = []
    compute.submit(gate.wait, 5)
    longs = [compute.submit(order.append, f"long{i}") for i in range(2)]
    short = compute.submit(order.append, "short", short=True)
    gate.set()
    for f in (*longs, short):
        f.result(timeout=5)
    assert order == ["short", "long0", "long1"]


def test_torch_threads_are_set_for_each_task():
    before = torch.get_num_threads()
    compute = ComputeThread(1)
    try:
        assert compute.call(torch.get_num_threads) == 1
        torch.set_num_threads(2)  # torch's setting is process-wide: someone changed it
        assert compute.call(torch.get_num_threads) == 1
    finally:
        torch.set_num_threads(before)


def test_inline_compute_runs_calls_in_the_caller():
    inline = InlineCompute()
    assert inline.call(threading.current_thread) is threading.current_thread()
    future = inline.submit(threading.current_thread)
    assert future.result(timeout=5) is not threading.current_thread()
    assert inline.run_waiting_short() == 0


def test_waiting_items_with_the_same_key_run_as_one_batch():
    compute = ComputeThread(1)
    gate = threading.Event()
    calls: list[list] = []
    order: list[str] = []

    def double(items: list) -> list:
        calls.append(list(items))
        order.append(f"batch{items}")
        return [2 * i for i in items]

    compute.submit(gate.wait, 5)  # keeps the thread busy while the others arrive
    a = [compute.submit_batched("k", i, double, max_batch=3) for i in range(4)]
    other = compute.submit_batched("other", 10, double)
    plain = compute.submit(order.append, "plain")
    a.append(compute.submit_batched("k", 4, double, max_batch=3))
    gate.set()
    assert [f.result(timeout=5) for f in a] == [0, 2, 4, 6, 8]
    assert other.result(timeout=5) == 20 and plain.result(timeout=5) is None
    # the oldest item takes the waiting ones of its key (at most 3), the rest keep their order
    assert calls == [[0, 1, 2], [3, 4], [10]]
    assert order == ["batch[0, 1, 2]", "batch[3, 4]", "batch[10]", "plain"]


def test_a_failing_batch_fails_every_item_and_cancelled_items_drop_out():
    compute = ComputeThread(1)
    gate = threading.Event()
    seen: list[list] = []

    def boom(items: list) -> list:
        seen.append(list(items))
        raise ValueError("bad batch")

    compute.submit(gate.wait, 5)
    futures = [compute.submit_batched("k", i, boom) for i in range(3)]
    assert futures[1].cancel()
    gate.set()
    for i in (0, 2):
        with pytest.raises(ValueError, match="bad batch"):
            futures[i].result(timeout=5)
    assert seen == [[0, 2]]
    short = compute.submit_batched("k", 7, lambda items: [len(items)])
    assert short.result(timeout=5) == 1  # alone: nothing waits for company
    assert InlineCompute().submit_batched("k", 3, lambda items: [items]).result(5) == [3]
