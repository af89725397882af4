"""Process-level CPU performance settings applied before heavy work.

glibc returns every large freed block (above a dynamic ~32 MB threshold) to the kernel and
maps it again on the next allocation, so each optimisation step re-faults hundreds of MB of
activation buffers. On the 2-core VM we develop on that cost ~70k minor page faults and up to
3× the wall time per 256 px inversion step; keeping freed memory in the allocator's pools
(``M_MMAP_THRESHOLD``/``M_TRIM_THRESHOLD`` raised) removes most of it. The price: memory freed
by torch is kept for reuse by this process instead of being returned to the OS at once.

Disable with ``IDINVERT_MALLOC_TUNING=0``. No effect outside Linux/glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

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
