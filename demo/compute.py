"""One long-lived thread for every tensor computation of the demo server.

Why: Gradio runs each request in a worker thread, and every thread that runs a multi-threaded
torch operation starts its own OpenMP team. Once the process holds more OpenMP threads than
the machine has cores, OpenMP stops spinning at its barriers and every parallel region pays a
sleep/wake-up; splitting the cores between threads instead halves each computation's speed.
A 100-step inversion on the bundled model took 9.0 s through the server with one thread per
request versus 5.1 s in the library with both cores. With all computations on one thread, the
server holds exactly one OpenMP team with every core.

Scheduling: *long* tasks (inversions, edits, model loading) run one after the other, in
arrival order; *short* ones (a slider's re-synthesis, a random sample) go first and are also
run **between the optimisation steps** of a running long task — the inversion's step callback
calls :meth:`ComputeThread.run_waiting_short` — so a slider answers within one step (tens of
milliseconds) instead of after the whole inversion.

OpenMP's waiting: with its default (spin ≈ 300,000 times at a barrier before sleeping) a 100-step
bf16 inversion took 4.4 s on a quiet 2-core machine and **68.7 s** while another process
trained on the same cores (the spinning threads burn the time slices the other one needs);
``GOMP_SPINCOUNT=10000`` keeps 4.4 s quiet and gives 16.7 s contended; ``1000``: 7.1 s / 8.0 s;
``OMP_WAIT_POLICY=PASSIVE``: 7.1 s quiet. ``idinvert demo`` and the Space entry point set
``GOMP_SPINCOUNT=10000`` unless it is set already (it must be set before torch is imported).

A task submitted from the compute thread itself runs inline (no deadlock), and every task runs
in a copy of the submitter's :mod:`contextvars` context (Gradio's progress reporting lives
there).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import torch

T = TypeVar("T")

_Task = tuple[Future, contextvars.Context, Callable[..., Any], tuple, dict]


class ComputeThread:
    """A daemon thread that runs submitted callables (see the module docstring).

    Args:
        threads: torch threads of the computations (its one OpenMP team); torch's setting
            is process-wide, so it is re-applied before a task when something changed it.
        name: the thread's name.
    """

    def __init__(self, threads: int, name: str = "idinvert-compute") -> None:
        self.threads = max(1, int(threads))
        self._short: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._long: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._wake = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self._thread.name

    def on_compute_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(
        self, fn: Callable[..., T], *args: Any, short: bool = False, **kwargs: Any
    ) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; a :class:`Future` for its result (or exception).

        From the compute thread itself the call runs at once (the future is already done).
        """
        future: Future[T] = Future()
        ctx = contextvars.copy_context()
        if self.on_compute_thread():
            _run(future, ctx, fn, args, kwargs)
            return future
        (self._short if short else self._long).put((future, ctx, fn, args, kwargs))
        self._wake.release()
        return future

    def call(self, fn: Callable[..., T], *args: Any, short: bool = False, **kwargs: Any) -> T:
        """:meth:`submit` and wait: the result, or the task's exception re-raised here."""
        return self.submit(fn, *args, short=short, **kwargs).result()

    def run_waiting_short(self) -> int:
        """Run the short tasks waiting now (only from the compute thread, between the steps of
        a long task); how many ran."""
        if not self.on_compute_thread():
            return 0
        ran = 0
        while True:
            try:
                task = self._short.get_nowait()
            except queue.Empty:
                return ran
            self._wake.acquire(blocking=False)  # its wake-up token is spent here
            _run(*task)
            ran += 1

    def _loop(self) -> None:
        while True:
            self._wake.acquire()
            try:
                task = self._short.get_nowait()
            except queue.Empty:
                try:
                    task = self._long.get_nowait()
                except queue.Empty:  # its short task already ran between another's steps
                    continue
            if torch.get_num_threads() != self.threads:  # the setting is process-wide
                torch.set_num_threads(self.threads)
            _run(*task)


def _run(
    future: Future, ctx: contextvars.Context, fn: Callable[..., Any], args: tuple, kwargs: dict
) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = ctx.run(fn, *args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
        future.set_exception(exc)
    else:
        future.set_result(result)


class InlineCompute:
    """:class:`ComputeThread`'s interface without the shared thread: :meth:`call` runs in the
    caller's thread, :meth:`submit` starts a thread per task. For ZeroGPU Spaces, where the GPU
    is attached to the decorated request call itself, and for ``DemoLimits(compute_thread=
    False)``."""

    name = "inline"

    def on_compute_thread(self) -> bool:
        return True

    def submit(
        self, fn: Callable[..., T], *args: Any, short: bool = False, **kwargs: Any
    ) -> Future[T]:
        future: Future[T] = Future()
        task = (future, contextvars.copy_context(), fn, args, kwargs)
        threading.Thread(target=_run, args=task, name="idinvert-task", daemon=True).start()
        return future

    def call(self, fn: Callable[..., T], *args: Any, short: bool = False, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    def run_waiting_short(self) -> int:
        return 0


Compute = ComputeThread | InlineCompute
