"""Model references → local model directories.

A reference is one of:

* ``None`` / ``""`` — the bundled default model;
* a built-in registry name (``idinvert models`` lists them);
* a path to a local model directory (contains ``config.json``);
* a Hugging Face Hub repo id ``owner/name[@revision]``.
"""

from __future__ import annotations

import re
from pathlib import Path

from idinvert.core.errors import ModelNotFoundError

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_MODEL = "faces64"
_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")


def bundled_models() -> dict[str, Path]:
    """Name → directory of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / "config.json").is_file()}


def parse_repo_reference(ref: str) -> tuple[str, str | None] | None:
    """``"owner/name@rev"`` → ``("owner/name", "rev")``; ``None`` if not a repo id."""
    m = _REPO_ID.match(ref)
    return (m.group("repo"), m.group("rev")) if m else None


def resolve_model(ref: str | Path | None = None) -> Path:
    """Resolve a model reference to a local model directory (downloading if needed).

    Raises:
        ModelNotFoundError: with a one-line message saying what was tried and what to do.
    """
    if ref is None or str(ref) == "":
        ref = DEFAULT_MODEL
    text = str(ref)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: a directory but not an idinvert model (no config.json)")
        return path
    bundled = bundled_models()
    if text in bundled:
        return bundled[text]
    repo = parse_repo_reference(text)
    if repo is not None and not path.exists():
        from idinvert.hub.download import download_model

        return download_model(repo[0], repo[1])
    known = ", ".join(sorted(bundled)) or "none installed"
    raise ModelNotFoundError(
        f"model {text!r} not found: not a model directory, not a built-in name ({known}) and "
        "not a Hub repo id of the form owner/name[@revision]"
    )
