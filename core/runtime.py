"""Process-level CPU performance settings applied before heavy work.

glibc returns every large freed block (above a dynamic ~32 MB threshold) to the kernel and
maps it again on the next allocation, so each optimisation step re-faults hundreds of MB of
activation buffers. On the 2-core VM we develop on that cost ~70k minor page faults and up to
3× the wall time per 256 px inversion step; keeping freed memory in the allocator's pools
(``M_MMAP_THRESHOLD``/``M_TRIM_THRESHOLD`` raised) removes most of it. The price: memory freed
by torch is kept for reuse by this process instead of being returned to the OS at once.

Disable with ``IDINVERT_MALLOC_TUNING=0``. No effect outside Linux/glibc.

OpenMP's waiting (:func:`use_short_openmp_spinning`): GNU OpenMP, which torch's Linux CPU
builds use, spins about 300,000 times at every barrier before its threads sleep. Alone on the
machine that is free; beside any other busy process it burns the time slices the other threads
need. ``idinvert invert`` on the bundled 64 px model, 2-core VM, while a training job ran on the
same cores: 2.5–3.0 s per step with OpenMP's default, 0.56–0.59 s with ``GOMP_SPINCOUNT=10000``;
alone: 0.160–0.166 s vs 0.170–0.172 s (3 interleaved rounds each). ``OMP_WAIT_POLICY=PASSIVE``
(never spin) did best beside the busy job (0.20 s per step in a script) but cost ~50 % alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

#: ``GOMP_SPINCOUNT`` the command line and the demo set unless OpenMP's waiting was chosen.
SHORT_SPINCOUNT = "10000"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_lock = threading.Lock()
_done = False


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; returns whether applied."""
    global _done
    with _lock:
        if _done:
            return True
        if os.environ.get("IDINVERT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
            "linux"
        ):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        ok = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(
            mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
        )
        logger.debug("glibc allocator tuning %s", "applied" if ok else "refused")
        _done = ok
        return ok


def use_short_openmp_spinning(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``GOMP_SPINCOUNT`` to :data:`SHORT_SPINCOUNT` unless the user chose how OpenMP
    waits (``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` already set; an explicit spin count would
    override a chosen policy, so neither is touched then).

    OpenMP reads its environment when torch loads it: call this before ``import torch``
    (child processes started later inherit the setting either way).

    Args:
        environ: the environment to change (``os.environ`` by default).

    Returns:
        Whether this process's OpenMP will use the short spin count: set here (or already
        :data:`SHORT_SPINCOUNT`) and torch not imported yet.
    """
    env = os.environ if environ is None else environ
    if "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = SHORT_SPINCOUNT
    return env.get("GOMP_SPINCOUNT") == SHORT_SPINCOUNT and "torch" not in sys.modules
