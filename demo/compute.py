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
``OMP_WAIT_POLICY=PASSIVE``: 7.1 s quiet. Every ``idinvert`` command and the Space entry point
set ``GOMP_SPINCOUNT=10000`` unless OpenMP's waiting was chosen already
(:func:`idinvert.core.runtime.use_short_openmp_spinning`, before torch is imported).

A task submitted from the compute thread itself runs inline (no deadlock), and every task runs
in a copy of the submitter's :mod:`contextvars` context (Gradio's progress reporting lives
there).
"""

from __future__ import annotations

import collections
import contextvars
import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")

_Task = tuple[Future, contextvars.Context, Callable[..., Any], tuple, dict]


@dataclass
class _BatchItem:
    """One request's share of a batchable long task (see :meth:`ComputeThread.submit_batched`)."""

    future: Future
    ctx: contextvars.Context
    key: Hashable
    item: Any
    run_batch: Callable[[list[Any]], list[Any]]
    max_batch: int


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
        self._long: collections.deque[_Task | _BatchItem] = collections.deque()
        self._long_lock = threading.Lock()
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
        if short:
            self._short.put((future, ctx, fn, args, kwargs))
        else:
            with self._long_lock:
                self._long.append((future, ctx, fn, args, kwargs))
        self._wake.release()
        return future

    def submit_batched(
        self,
        key: Hashable,
        item: Any,
        run_batch: Callable[[list[Any]], list[Any]],
        max_batch: int = 8,
    ) -> Future:
        """Queue a long task that may run together with others of the same ``key``.

        When the compute thread reaches it, every ``key`` item waiting at that moment (up to
        ``max_batch``, in arrival order) runs in one ``run_batch(items) -> results`` call —
        concurrent visitors' inversions with equal settings become one batched optimisation.
        Nothing waits for company: an item alone runs alone. The future holds this item's
        result, or the batch's exception.
        """
        future: Future = Future()
        entry = _BatchItem(
            future, contextvars.copy_context(), key, item, run_batch, max(1, max_batch)
        )
        if self.on_compute_thread():
            _run_batch([entry])
            return future
        with self._long_lock:
            self._long.append(entry)
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

    def _next_long(self) -> list[_BatchItem] | _Task | None:
        """The oldest long task, or the oldest batch item with its waiting companions."""
        with self._long_lock:
            if not self._long:
                return None
            first = self._long.popleft()
            if not isinstance(first, _BatchItem):
                return first
            batch = [first]
            rest: collections.deque[_Task | _BatchItem] = collections.deque()
            while self._long:
                entry = self._long.popleft()
                if (
                    isinstance(entry, _BatchItem)
                    and entry.key == first.key
                    and len(batch) < first.max_batch
                ):
                    batch.append(entry)
                else:
                    rest.append(entry)
            self._long = rest
        for _ in batch[1:]:  # their wake-up tokens are spent here
            self._wake.acquire(blocking=False)
        return batch

    def _loop(self) -> None:
        while True:
            self._wake.acquire()
            task: list[_BatchItem] | _Task | None
            try:
                task = self._short.get_nowait()
            except queue.Empty:
                task = self._next_long()
                if task is None:  # its task already ran between another's steps
                    continue
            if torch.get_num_threads() != self.threads:  # the setting is process-wide
                torch.set_num_threads(self.threads)
            if isinstance(task, list):
                _run_batch(task)
            else:
                _run(*task)


def _run_batch(batch: list[_BatchItem]) -> None:
    live = [b for b in batch if b.future.set_running_or_notify_cancel()]
    if not live:
        return
    try:
        results = live[0].ctx.run(live[0].run_batch, [b.item for b in live])
        if len(results) != len(live):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(live)} items")
    except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
        for b in live:
            b.future.set_exception(exc)
    else:
        for b, result in zip(live, results, strict=True):
            b.future.set_result(result)


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

    def submit_batched(
        self,
        key: Hashable,
        item: Any,
        run_batch: Callable[[list[Any]], list[Any]],
        max_batch: int = 8,
    ) -> Future:
        """``run_batch([item])`` in a thread of its own (nothing to batch with)."""
        entry = _BatchItem(Future(), contextvars.copy_context(), key, item, run_batch, 1)
        threading.Thread(
            target=_run_batch, args=([entry],), name="idinvert-task", daemon=True
        ).start()
        return entry.future

    def call(self, fn: Callable[..., T], *args: Any, short: bool = False, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    def run_waiting_short(self) -> int:
        return 0


Compute = ComputeThread | InlineCompute
