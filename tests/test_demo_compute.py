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
