"""Hugging Face Space entry point: the same app as ``idinvert demo``.

The model is ``IDINVERT_MODEL`` (a Space variable: a Hub repo id pinned to a revision, e.g.
``owner/idinvert-ffhq256@<commit>``) or else ``DEFAULT_MODEL`` below (written by
``idinvert space export --model``; ``None`` = the bundled offline model). It is loaded once, when
this module is imported; only the inversion and edit functions run under ``@spaces.GPU`` (see
``idinvert.demo.gpu``).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
from idinvert.core.runtime import use_short_openmp_spinning  # noqa: E402

use_short_openmp_spinning()  # before torch loads OpenMP (see idinvert.core.runtime)

from idinvert.demo.app import build_demo, launch_kwargs  # noqa: E402
from idinvert.demo.service import DemoLimits  # noqa: E402

#: The model this Space was exported for; the IDINVERT_MODEL variable overrides it.
DEFAULT_MODEL = None

LIMITS = DemoLimits(
    max_steps=int(os.environ.get("IDINVERT_MAX_STEPS", "200")),
    default_steps=int(os.environ.get("IDINVERT_DEFAULT_STEPS", "100")),
    max_upload_mb=int(os.environ.get("IDINVERT_MAX_UPLOAD_MB", "10")),
    concurrency=int(os.environ.get("IDINVERT_CONCURRENCY", "8")),
    max_contexts=int(os.environ.get("IDINVERT_MAX_CONTEXTS", "4")),
    max_sessions=int(os.environ.get("IDINVERT_MAX_SESSIONS", "200")),
    session_ttl_s=int(os.environ.get("IDINVERT_SESSION_TTL", "3600")),
    torch_threads=int(os.environ.get("IDINVERT_THREADS") or 0) or None,
    precision=os.environ.get("IDINVERT_PRECISION", "auto"),
    max_batch=int(os.environ.get("IDINVERT_MAX_BATCH", "8")),
)
demo = build_demo(os.environ.get("IDINVERT_MODEL") or DEFAULT_MODEL, "auto", LIMITS)

if __name__ == "__main__":
    demo.launch(**launch_kwargs(LIMITS))
