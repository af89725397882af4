"""Run-directory plumbing shared by the GAN and encoder trainers.

Config (de)serialisation (:class:`RunConfigMixin`), atomic ``weights_only`` checkpoints, the
run-directory layout and lock, RNG restore on resume, SIGINT/SIGTERM stop handling, windowed
log statistics and ``log.jsonl`` lines. Formats are unchanged from the per-trainer versions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from idinvert.training.distributed import DistContext

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
LOCK_FILE = "train.lock"


# ---------------------------------------------------------------------------------------------
# Configuration


# Runtime fields of both trainers' configs (may change when resuming).
RUNTIME_FIELDS = frozenset(
    {
        "total_kimg",
        "threads",
        "num_workers",
        "checkpoint_minutes",
        "sample_every",
        "log_every",
        "grid_size",
        "progress",
        "device",
    }
)


class RunConfigMixin:
    """``to_dict``/``from_dict``/``incompatible_with`` for a training-config dataclass.

    The dataclass defines ``RUNTIME_FIELDS``: fields that may differ between a checkpoint and
    the resuming command.
    """

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """Plain (JSON / ``weights_only``-safe) dict of the fields."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown} (newer idinvert?)")
        return cls(**data)

    def incompatible_with(self, other: Any) -> list[str]:
        """Fields (outside :attr:`RUNTIME_FIELDS`) whose values differ from ``other``."""
        return [
            f"{f.name}: {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name not in self.RUNTIME_FIELDS and getattr(self, f.name) != getattr(other, f.name)
        ]


def raise_if_incompatible(diff: list[str], where: Path) -> None:
    """``ValueError`` naming the differing fields of a checkpoint ``where`` (if any)."""
    if diff:
        raise ValueError(
            f"{where} was trained with a different configuration ({'; '.join(diff)}); "
            "resume with the same settings, or start over (--no-resume / another --out)"
        )


# ---------------------------------------------------------------------------------------------
# Checkpoints


def resume_checkpoint(run_dir: Path, resume: bool, load: Any) -> tuple[Path, dict | None]:
    """``(run_dir/checkpoint.pt, its contents via load)``; contents ``None`` when not resuming."""
    path = run_dir / CHECKPOINT_FILE
    return path, (load(path) if resume and path.is_file() else None)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temp file beside ``path``, then ``os.replace`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint_file(path: str | Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """``weights_only`` CPU load of a checkpoint whose ``format`` is ``fmt``.

    Raises ``ValueError`` ("not an idinvert ``what`` checkpoint") for another format and for a
    ``version`` newer than ``version``.
    """
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"{path}: not an idinvert {what} checkpoint")
    if int(ckpt.get("version", 0)) > version:
        raise ValueError(f"{path}: checkpoint version {ckpt['version']} is newer than supported")
    return ckpt


def stored_config(run_dir: str | Path, load: Any, config_cls: Any) -> Any:
    """``config_cls`` of ``run_dir/checkpoint.pt`` (read with ``load``), or ``None`` if absent."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return config_cls.from_dict(load(path)["config"])


def counters_payload(state: Any, rng: torch.Tensor) -> dict[str, Any]:
    """The ``step``/``nimg``/``elapsed_sec``/``world_size``/``rng`` entries of a checkpoint."""
    return {
        "step": state.step,
        "nimg": state.nimg,
        "elapsed_sec": state.elapsed_sec,
        "world_size": int(rng.shape[0]),
        "rng": rng,
    }


def restore_counters(state: Any, ckpt: dict[str, Any]) -> None:
    """Inverse of :func:`counters_payload` for ``step``, ``nimg`` and ``elapsed_sec``."""
    state.step = int(ckpt["step"])
    state.nimg = int(ckpt["nimg"])
    state.elapsed_sec = float(ckpt.get("elapsed_sec", 0.0))


def restore_rng(ckpt: dict[str, Any] | None, ctx: DistContext, seed: int, step: int) -> None:
    """Restore this rank's RNG from ``ckpt`` (same world size), else seed it from ``seed``."""
    if ckpt is not None and int(ckpt["world_size"]) == ctx.world:
        # clone(): set_rng_state misreads a row view with a storage offset (torch 2.14).
        torch.set_rng_state(ckpt["rng"][ctx.rank].clone())
    else:
        torch.manual_seed(seed * 1000 + 1 + ctx.rank + step)


# ---------------------------------------------------------------------------------------------
# Run directory


def prepare_run_dir(run_dir: Path, cfg: RunConfigMixin, fresh: bool) -> None:
    """Create ``samples/``, write ``config.json``; ``fresh`` drops the old log and grids."""
    (run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    if fresh:
        (run_dir / LOG_FILE).unlink(missing_ok=True)
        for old in (run_dir / SAMPLES_DIR).glob("grid_*.png"):
            old.unlink()
    (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")


def lock_run_dir(run_dir: Path) -> IO[str] | None:
    """Hold an exclusive ``flock`` on ``run_dir/train.lock`` (released when the process ends).

    Two trainings writing the same run directory would corrupt it (e.g. resuming while the
    background run is still going).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise RuntimeError(
            f"{run_dir} is in use by another training process (pid {owner}); stop it first "
            "(kill -TERM <pid> saves a checkpoint) or choose another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``run_dir/log.jsonl``."""
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------
# Loop helpers


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps (a second SIGINT aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def progress_bar(total: int, initial: int, enabled: bool, desc: str | None = None) -> Any:
    """The trainers' tqdm bar (refreshes every second on a terminal, else every 30 s)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        desc=desc,
        disable=not enabled,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )


class StatWindow:
    """Sums of per-step statistics (:attr:`KEYS`) between two log lines."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(self.KEYS), dtype=torch.float64)
        self.counts = torch.zeros(len(self.KEYS), dtype=torch.float64)
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, stats: dict[str, float]) -> None:
        for i, key in enumerate(self.KEYS):
            if key in stats:
                self.sums[i] += stats[key]
                self.counts[i] += 1
        self.steps += 1

    def means(self, ctx: DistContext) -> dict[str, float | None]:
        both = ctx.all_reduce_mean_(torch.cat([self.sums, self.counts]))
        n = len(self.KEYS)
        return {
            k: (float(both[i] / both[n + i]) if both[n + i] > 0 else None)
            for i, k in enumerate(self.KEYS)
        }

    def timing(self, batch_size: int) -> dict[str, float]:
        """``sec_per_step`` and ``images_per_sec`` of the window (rounded as logged)."""
        dt = time.perf_counter() - self.t0
        steps = max(self.steps, 1)
        return {
            "sec_per_step": round(dt / steps, 4),
            "images_per_sec": round(batch_size * steps / max(dt, 1e-9), 2),
        }


def summary(state: Any, stopped: bool, last: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The common part of a trainer's return value."""
    return {
        "step": state.step,
        "nimg": state.nimg,
        "kimg": state.nimg / 1000,
        "stopped": stopped,
        "last": last,
        "run_dir": str(run_dir),
    }


def check_finite(means: dict[str, float | None], keys: tuple[str, ...], step: int) -> None:
    """``FloatingPointError`` if one of ``keys`` in ``means`` is NaN or infinite."""
    for key in keys:
        value = means[key]
        if value is not None and not math.isfinite(value):
            raise FloatingPointError(f"{key} became {value} at step {step}")
