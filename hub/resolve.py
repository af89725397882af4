"""Model references → local model directories.

A reference is one of (checked in this order):

1. ``None`` / ``""`` — the bundled default model (``faces64``);
2. a path to an existing local model directory (holds ``config.json``);
3. a registry name (``idinvert models`` lists them): a name with a setting
   (``IDINVERT_MODEL_<NAME>`` or ``[models]`` in the config file) resolves to the reference it
   names; otherwise a bundled model; official names without a setting fail with the steps to
   convert and publish them;
4. a Hugging Face Hub repo id ``owner/name[@revision]`` (downloaded into huggingface_hub's cache,
   see :mod:`idinvert.hub.download`).
"""

from __future__ import annotations

import re
from pathlib import Path

from idinvert.core.errors import ModelNotFoundError
from idinvert.hub import registry, settings
from idinvert.hub.registry import BUNDLED_DIR, DEFAULT_MODEL, bundled_models

__all__ = [
    "BUNDLED_DIR",
    "DEFAULT_MODEL",
    "bundled_models",
    "parse_repo_reference",
    "resolve_model",
]

_REPO_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<rev>[\w./-]{1,200}))?$"
)


def parse_repo_reference(ref: str) -> tuple[str, str | None] | None:
    """``"owner/name@rev"`` → ``("owner/name", "rev")``; ``None`` if not a repo id."""
    m = _REPO_ID.match(ref.strip())
    if not m or ".." in m.group("repo") or (m.group("rev") or "").startswith("/"):
        return None
    return m.group("repo"), m.group("rev")


def _local_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path}: a directory but not an idinvert model (no config.json)")
    return path


def resolve_model(ref: str | Path | None = None, *, _depth: int = 0) -> Path:
    """Resolve a model reference to a local model directory (downloading if needed).

    Raises:
        ModelNotFoundError: with a one-line message saying what was tried and what to do.
    """
    text = "" if ref is None else str(ref).strip()
    if not text:
        text = DEFAULT_MODEL
    path = Path(text).expanduser()
    if path.is_dir():
        return _local_dir(path)
    configured = settings.configured_model(text) or settings.configured_models().get(text)
    if configured is not None:  # an explicit setting wins over the bundled copy
        target, origin = configured
        if _depth > 4 or target.strip() == text:
            raise ModelNotFoundError(f"model {text!r}: {origin} makes a loop of references")
        try:
            return resolve_model(target, _depth=_depth + 1)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"model {text!r} (set by {origin}): {exc}") from None
    bundled = bundled_models()
    if text in bundled:
        return bundled[text]
    if text in registry.OFFICIAL_MODELS:
        raise ModelNotFoundError(registry.unconfigured_message(registry.OFFICIAL_MODELS[text]))
    if text == DEFAULT_MODEL:
        raise ModelNotFoundError(
            f"the bundled default model {DEFAULT_MODEL!r} is not installed in this copy of "
            f"idinvert ({BUNDLED_DIR / DEFAULT_MODEL} is missing): pass --model with a model "
            "directory or a Hub repo id owner/name[@revision] (see `idinvert models`)"
        )
    repo = parse_repo_reference(text)
    if repo is not None and not path.exists():
        from idinvert.hub.download import download_model

        return download_model(repo[0], repo[1])
    if path.exists():
        raise ModelNotFoundError(
            f"{path}: not a model directory (a model is a folder with config.json)"
        )
    known = ", ".join(e.name for e in registry.list_entries())
    raise ModelNotFoundError(
        f"model {text!r} not found: not a local directory, not a registry name ({known}) and "
        "not a Hub repo id of the form owner/name[@revision]"
    )
