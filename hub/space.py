"""A complete Hugging Face Space folder for the demo (``idinvert space export``).

The folder holds:

``README.md``
    the Space card: YAML front matter (``sdk: gradio``, ``sdk_version`` = the gradio this
    idinvert was tested with, ``app_file: app.py``, ``models:`` naming the model repo) and the
    Space's settings (``IDINVERT_MODEL`` and the limits).
``app.py``
    the entry point: :data:`APP_TEMPLATE` (``demo/space/app.py`` in the source tree is the same
    file for the bundled model). The UI comes from :mod:`idinvert.demo.app`, the model is loaded
    once when the module is imported, and only the inversion/edit functions run under
    ``@spaces.GPU``. ``DEFAULT_MODEL`` is the exported model reference (pinned revision
    included); a ``IDINVERT_MODEL`` Space variable overrides it.
``requirements.txt``
    idinvert's own requirements with the ``demo`` and ``align`` extras, plus ``spaces``.
``idinvert/`` and ``idinvert-<version>.dist-info/``
    idinvert itself, unpacked from its wheel (built from the source checkout with
    ``pip wheel --no-deps``, given with ``--wheel``, or copied from the installed distribution).

Why idinvert is unpacked instead of listed in ``requirements.txt`` as ``./idinvert-….whl``:
the Spaces builder installs ``requirements.txt`` *before* it copies the repository into the
image (``RUN --mount=target=/tmp/requirements.txt,source=requirements.txt pip install -r
/tmp/requirements.txt``, then ``COPY ./ /home/user/app``), so no other file of the Space exists
at install time and a relative wheel path cannot be found. A package folder next to ``app.py``
is importable as soon as the app starts (``python app.py`` puts its folder first on
``sys.path``), needs no package index, and works the same when the folder is run locally with
``pip install -r requirements.txt && python app.py``.

The folder is written atomically: it is assembled beside the target and renamed into place, so
a failure leaves nothing behind (and, with ``overwrite``, the previous folder intact).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from idinvert.core.errors import IdinvertError

logger = logging.getLogger(__name__)

DIST_NAME = "idinvert"
#: Extras the Space installs (the web demo and FFHQ face alignment).
SPACE_EXTRAS: tuple[str, ...] = ("demo", "align")
#: Requirements added for the Space runtime beside idinvert's own.
SPACE_EXTRA_REQUIREMENTS: tuple[str, ...] = ("spaces>=0.30",)
_COMMIT = re.compile(r"[0-9a-f]{40}")

APP_TEMPLATE = '''"""Hugging Face Space entry point: the same app as ``idinvert demo``.

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
DEFAULT_MODEL = {default_model}

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
'''


class SpaceExportError(IdinvertError, ValueError):
    """The Space folder cannot be written (bad model reference, target, wheel or source)."""


@dataclass(frozen=True)
class SpaceModel:
    """The model an exported Space serves.

    Attributes:
        reference: what ``DEFAULT_MODEL`` is set to (``None``: the bundled default model).
        repo_id: the Hub model repo (``owner/name``) for the card's ``models:``, if any.
        revision: the pinned revision of ``repo_id`` (``None``: ``main``).
    """

    reference: str | None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def pinned(self) -> bool:
        """Whether the revision is a full commit hash (reproducible)."""
        return bool(self.revision and _COMMIT.fullmatch(self.revision))


@dataclass(frozen=True)
class SpacePackage:
    """idinvert's files to place in the Space and its requirements.

    Attributes:
        files: path inside the Space (``idinvert/...``, ``idinvert-X.dist-info/...``) → bytes.
        requires: the distribution's ``Requires-Dist`` lines.
        version: the distribution's version.
        origin: where the files came from (for messages and the card).
    """

    files: dict[str, bytes]
    requires: list[str]
    version: str
    origin: str


# ------------------------------------------------------------------------ the model
def space_model(ref: str | None) -> SpaceModel:
    """Check a ``--model`` reference for use on a Space (which sees neither this machine's
    directories nor its settings).

    A Hub repo id ``owner/name[@revision]`` is kept as given; a registry name configured to a
    reference (``IDINVERT_MODEL_<NAME>`` or the config file) is replaced by that reference; the
    bundled model's name is kept; a local directory is refused.

    Raises:
        SpaceExportError: the reference cannot work on a Space.
    """
    from idinvert.hub import settings
    from idinvert.hub.registry import bundled_models
    from idinvert.hub.resolve import parse_repo_reference

    text = (ref or "").strip()
    if not text:
        return SpaceModel(None)
    seen: list[str] = []
    while True:
        if Path(text).expanduser().exists():
            raise SpaceExportError(
                f"--model {text}: a local directory cannot be reached from a Space; publish it "
                "with `idinvert hub publish DIR --repo-id owner/name` and pass "
                "owner/name@<commit>"
            )
        configured = settings.configured_model(text) if "/" not in text else None
        if configured is not None and text not in seen:
            seen.append(text)
            text = configured[0].strip()
            continue
        if text in bundled_models():
            return SpaceModel(text)
        parsed = parse_repo_reference(text)
        if parsed is None:
            raise SpaceExportError(
                f"--model {text}: not a Hub repo id owner/name[@revision], a configured name or "
                f"a bundled model ({', '.join(bundled_models()) or 'none installed'})"
            )
        repo_id, revision = parsed
        return SpaceModel(text, repo_id, revision)


# ---------------------------------------------------------------------- the package
def source_checkout() -> Path | None:
    """The source tree idinvert is installed from (an editable or local-directory install),
    or ``None`` when it was installed from a wheel."""
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        raw = dist.read_text("direct_url.json")
        try:
            data = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            data = {}
        url = str(data.get("url", ""))
        if "dir_info" in data and url.startswith("file:"):
            path = Path(unquote(urlsplit(url).path))
            if _is_source_tree(path):
                return path
    here = Path(__file__).resolve().parent.parent  # hub/ inside a checkout
    return here if _is_source_tree(here) else None


def _is_source_tree(path: Path) -> bool:
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        return False
    return bool(re.search(r'(?m)^name\s*=\s*"idinvert"\s*$', pyproject.read_text("utf-8")))


def _package_dirs(source: Path) -> list[str]:
    """Top-level folders of the source tree that hold packages (``[tool.setuptools]``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data = tomllib.loads((source / "pyproject.toml").read_text("utf-8"))
    package_dir = data.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    tops = sorted({PurePosixPath(v).parts[0] for v in package_dir.values() if v})
    if not tops:
        raise SpaceExportError(f"{source}/pyproject.toml: no [tool.setuptools] package-dir")
    return tops


def build_wheel(source: Path, out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the idinvert source tree ``source`` into ``out_dir``.

    The package folders, ``pyproject.toml`` and ``README.md`` are copied to a scratch folder
    first, so the build writes nothing into the checkout (no ``build/``, no ``*.egg-info``).

    Raises:
        SpaceExportError: not an idinvert source tree, or the build failed (pip's last line).
    """
    source = Path(source).expanduser().resolve()
    if not _is_source_tree(source):
        raise SpaceExportError(f"{source}: not an idinvert source tree (no pyproject.toml)")
    with tempfile.TemporaryDirectory(prefix="idinvert-wheel-") as tmp:
        tree = Path(tmp) / "src"
        tree.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py"):
            if (source / name).is_file():
                shutil.copy2(source / name, tree / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
        for top in _package_dirs(source):
            shutil.copytree(source / top, tree / top, ignore=ignore)
        # The running Python's setuptools builds it; no isolated build env (works offline).
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        cmd += ["--disable-pip-version-check", "-q", "-w", str(out_dir), str(tree)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
            raise SpaceExportError(f"building the idinvert wheel from {source} failed: {last}")
    wheels = sorted(Path(out_dir).glob("idinvert-*.whl"))
    if len(wheels) != 1:
        raise SpaceExportError(f"building the idinvert wheel from {source} gave {len(wheels)}")
    return wheels[0]


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return not (path.is_absolute() or ".." in path.parts or name.endswith("/"))


def package_from_wheel(wheel: str | Path) -> SpacePackage:
    """idinvert's files and requirements from a wheel file.

    Raises:
        SpaceExportError: not a readable idinvert wheel.
    """
    wheel = Path(wheel).expanduser()
    try:
        with zipfile.ZipFile(wheel) as zf:
            files = {n: zf.read(n) for n in zf.namelist() if _safe_member(n)}
    except (OSError, zipfile.BadZipFile) as exc:
        raise SpaceExportError(f"{wheel}: not a readable wheel ({exc})") from None
    meta_name = next(
        (n for n in files if re.fullmatch(r"idinvert-[^/]+\.dist-info/METADATA", n)), None
    )
    if meta_name is None:
        raise SpaceExportError(f"{wheel}: not an idinvert wheel (no idinvert-*.dist-info/METADATA)")
    if not any(n.startswith("idinvert/") for n in files):
        raise SpaceExportError(f"{wheel}: holds no idinvert/ package")
    import email.parser

    meta = email.parser.BytesParser().parsebytes(files[meta_name], headersonly=True)
    keep = {
        n: d
        for n, d in files.items()
        if n.split("/", 1)[0] == "idinvert" or n.startswith(meta_name.split("/", 1)[0] + "/")
    }
    return SpacePackage(
        keep, list(meta.get_all("Requires-Dist") or []), str(meta["Version"]), wheel.name
    )


def package_from_installed() -> SpacePackage:
    """idinvert's files as installed (a regular, non-editable install from a wheel).

    Raises:
        SpaceExportError: idinvert is not installed that way.
    """
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise SpaceExportError("idinvert is not installed; pass --wheel or --source") from None
    files: dict[str, bytes] = {}
    for rel in dist.files or []:
        parts = rel.parts
        if not parts or "__pycache__" in parts or rel.suffix == ".pyc":
            continue
        if parts[0] != "idinvert" and not parts[0].endswith(".dist-info"):
            continue
        path = Path(str(dist.locate_file(rel)))
        if path.is_file():
            files[rel.as_posix()] = path.read_bytes()
    if not any(n.startswith("idinvert/") for n in files):
        raise SpaceExportError(
            "the installed idinvert lists no package files (an editable install without its "
            "source tree?); pass --wheel FILE or --source DIR"
        )
    return SpacePackage(files, list(dist.requires or []), dist.version, "the installed idinvert")


def space_requirements(requires: Iterable[str], extras: Iterable[str] = SPACE_EXTRAS) -> list[str]:
    """``requirements.txt`` lines: the base requirements and those of ``extras``, plus
    :data:`SPACE_EXTRA_REQUIREMENTS`; extra markers are dropped, other markers kept.

    Raises:
        SpaceExportError: a requirement that does not parse.
    """
    from packaging.markers import Marker
    from packaging.requirements import InvalidRequirement, Requirement

    wanted = tuple(extras)
    lines: list[str] = []
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise SpaceExportError(
                f"idinvert requirement {text!r} does not parse ({exc})"
            ) from None
        marker = req.marker
        if marker is not None and "extra" in str(marker):
            if not any(marker.evaluate({"extra": e}) for e in wanted):
                continue
            rest = [m for m in re.split(r"\s+and\s+", str(marker)) if "extra" not in m]
            req.marker = Marker(" and ".join(rest)) if rest else None
        lines.append(str(req))
    names = {Requirement(line).name.lower().replace("_", "-") for line in lines}
    for extra in SPACE_EXTRA_REQUIREMENTS:
        if Requirement(extra).name.lower() not in names:
            lines.append(extra)
    return lines


# ------------------------------------------------------------------------ the files
def _py_str(value: str | None) -> str:
    return "None" if value is None else json.dumps(value)


def render_app(default_model: str | None = None) -> str:
    """The Space's ``app.py`` with ``DEFAULT_MODEL`` set to ``default_model``."""
    return APP_TEMPLATE.replace("{default_model}", _py_str(default_model))


def _gradio_version() -> str:
    try:
        return importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        return "6.31.0"


def render_readme(model: SpaceModel, version: str, gradio_version: str | None = None) -> str:
    """The Space card: front matter (``models:`` names the model repo) and the settings."""
    gradio_version = gradio_version or _gradio_version()
    models = f"\n  - {json.dumps(model.repo_id)}" if model.repo_id else " []"
    if model.reference is None:
        default = "the bundled offline model (`faces64`)"
    else:
        default = f"`{model.reference}`"
    pin_note = ""
    if model.repo_id and not model.pinned:
        pin_note = (
            "\n> The model is not pinned to a commit: the Space loads whatever the revision "
            "points to when it starts. Re-export with `--model owner/name@<commit>` for "
            "reproducible results.\n"
        )
    front = f"""---
title: idinvert - In-Domain GAN Inversion
emoji: 🪞
colorFrom: indigo
colorTo: pink
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
python_version: "3.11"
suggested_hardware: zero-a10g
pinned: false
license: mit
short_description: Invert real photos into StyleGAN W+ and edit them
tags:
  - gan-inversion
  - stylegan
  - image-editing
models:{models}
---
"""
    body = f"""
# idinvert Space

Invert a photo into the W+ space of a StyleGAN with the in-domain inversion of Zhu et al.
(ECCV 2020, arXiv:2004.00049), then edit it with every installed idinvert plugin. Face models
align faces FFHQ-style and paste the results back into the photo.

Model: {default} (written by `idinvert space export`; set the `IDINVERT_MODEL` variable
to serve another one).
{pin_note}
Settings (Space variables):

| variable | meaning | default |
|---|---|---|
| `IDINVERT_MODEL` | model reference: `owner/name@<commit>` (pin a commit) | {default} |
| `IDINVERT_MAX_STEPS` | server-side cap on optimization steps | 200 |
| `IDINVERT_DEFAULT_STEPS` | steps preselected in the UI | 100 |
| `IDINVERT_MAX_UPLOAD_MB` | upload size cap | 10 |
| `IDINVERT_CONCURRENCY` | requests handled at once (the rest wait in the queue) | 8 |
| `IDINVERT_MAX_CONTEXTS` | context images per semantic diffusion | 4 |
| `IDINVERT_MAX_SESSIONS` | sessions whose state is kept in memory | 200 |
| `IDINVERT_SESSION_TTL` | seconds a session's state and files live after its last action | 3600 |
| `IDINVERT_THREADS` | CPU threads of the compute thread | all cores |
| `IDINVERT_MAX_BATCH` | concurrent visitors' inversions run as one batch (1 = never) | 8 |
| `IDINVERT_PRECISION` | `auto` (bf16 where native: AMX CPUs, GPUs), `fp32` or `bf16` | auto |
| `IDINVERT_MODELS` | several models side by side: `label=ref,label=ref,...` (a selector) | unset |
| `IDINVERT_GPU_SECONDS` | ZeroGPU time requested per inversion/edit | 120 |

A private model repo needs an `HF_TOKEN` secret with read access.

## What is in this folder

- `app.py`: the entry point (the UI of `idinvert.demo.app`; the model is loaded once at start;
  only the inversion and edit functions run under `@spaces.GPU`);
- `requirements.txt`: idinvert's requirements with the `demo` and `align` extras, and `spaces`;
- `idinvert/`, `idinvert-{version}.dist-info/`: idinvert {version} itself, unpacked from its
  wheel. The Spaces builder installs `requirements.txt` before it copies the repository, so a
  wheel file inside the Space could not be installed from it; the package folder next to
  `app.py` is imported directly.

Run it locally with `pip install -r requirements.txt && python app.py`.

## Publish

```python
from huggingface_hub import HfApi

api = HfApi()  # HF_TOKEN or `hf auth login`, with write access
api.create_repo("owner/space", repo_type="space", space_sdk="gradio", exist_ok=True)
api.upload_folder(folder_path=".", repo_id="owner/space", repo_type="space")
```

## Licences

idinvert is MIT licensed. The model's weights have their own licence (see its model card);
the official IDInvert weights were trained on FFHQ (CC BY-NC-SA 4.0). Face alignment uses
dlib's 68-point landmark model, whose iBUG 300-W training data is licensed for non-commercial
use only. The perceptual network (torchvision's ImageNet VGG16, downloaded from the Hub at
start when the model needs it) was trained on ImageNet (non-commercial research terms).
"""
    return front + body


# ------------------------------------------------------------------------ the export
def _collect_package(
    wheel: str | Path | None, source: str | Path | None, tmp: Path
) -> SpacePackage:
    if wheel is not None and source is not None:
        raise SpaceExportError("pass either --wheel or --source, not both")
    if wheel is not None:
        return package_from_wheel(wheel)
    src = Path(source).expanduser() if source is not None else source_checkout()
    if src is not None:
        return package_from_wheel(build_wheel(src, tmp / "wheel"))
    return package_from_installed()


def _prepare_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise SpaceExportError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SpaceExportError(f"{out_dir}: not empty; pass --overwrite to replace it")
    if not out_dir.parent.is_dir():
        raise SpaceExportError(f"{out_dir.parent}: no such directory")


def export_space(
    out_dir: str | Path,
    model: str | None = None,
    *,
    overwrite: bool = False,
    wheel: str | Path | None = None,
    source: str | Path | None = None,
) -> Path:
    """Write a complete Hugging Face Space folder for the demo (see the module docstring).

    Args:
        out_dir: the folder to write (must be empty or missing unless ``overwrite``).
        model: the model reference the Space serves by default (see :func:`space_model`).
        overwrite: replace a non-empty ``out_dir`` (atomically).
        wheel: an idinvert wheel to ship (default: built from the source checkout, else the
            installed distribution's files).
        source: an idinvert source tree to build the wheel from.

    Returns:
        ``out_dir`` (resolved).

    Raises:
        SpaceExportError: one-line reason; nothing is left behind.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    _prepare_target(out_dir, overwrite)
    target_model = space_model(model)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise SpaceExportError(f"{out_dir.parent}: cannot write there ({exc})") from None
    old: Path | None = None
    try:
        package = _collect_package(wheel, source, tmp)
        stage = tmp / "space"
        stage.mkdir()
        for rel, data in sorted(package.files.items()):
            dest = stage / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        requirements = space_requirements(package.requires)
        header = (
            "# idinvert's requirements (extras: demo, align) and the Space runtime.\n"
            f"# idinvert {package.version} itself is the idinvert/ folder beside app.py "
            "(see README.md).\n"
        )
        (stage / "requirements.txt").write_text(header + "\n".join(requirements) + "\n")
        (stage / "app.py").write_text(render_app(target_model.reference))
        (stage / "README.md").write_text(render_readme(target_model, package.version), "utf-8")
        if out_dir.exists():
            if any(out_dir.iterdir()):
                old = tmp / "previous"
                os.replace(out_dir, old)
            else:
                out_dir.rmdir()
        os.replace(stage, out_dir)
    except BaseException as exc:
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)
        if isinstance(exc, OSError):
            raise SpaceExportError(f"{out_dir}: writing the Space failed ({exc})") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "Space for %s written to %s (%s)", model or "the bundled model", out_dir, package.origin
    )
    return out_dir


def export_summary(out_dir: Path) -> str:
    """Human-readable lines about an exported folder (what ``idinvert space export`` prints)."""
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return f"{len(files)} files, {size / 1e6:.1f} MB"


def read_requirements(path: Path) -> list[str]:
    """The requirement lines of a ``requirements.txt`` (comments and blank lines dropped)."""
    lines = Path(path).read_text("utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
