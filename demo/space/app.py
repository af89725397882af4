"""Hugging Face Space entry point: the same app as ``idinvert demo``.

The model comes from ``IDINVERT_MODEL`` (a Hub repo id pinned to a revision, e.g.
``owner/idinvert-ffhq256@<commit>``; default: the bundled offline model). Only the inversion
and edit functions run under ``@spaces.GPU`` (see ``idinvert.demo.gpu``).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from idinvert.demo.app import build_demo, launch_kwargs  # noqa: E402
from idinvert.demo.service import DemoLimits  # noqa: E402

LIMITS = DemoLimits(
    max_steps=int(os.environ.get("IDINVERT_MAX_STEPS", "200")),
    default_steps=int(os.environ.get("IDINVERT_DEFAULT_STEPS", "100")),
    max_upload_mb=int(os.environ.get("IDINVERT_MAX_UPLOAD_MB", "10")),
    concurrency=int(os.environ.get("IDINVERT_CONCURRENCY", "2")),
)
demo = build_demo(os.environ.get("IDINVERT_MODEL") or None, "auto", LIMITS)

if __name__ == "__main__":
    demo.launch(**launch_kwargs(LIMITS))
