"""Downloading model directories from the Hugging Face Hub (safetensors/JSON/text only)."""

from __future__ import annotations

from pathlib import Path

from idinvert.core.errors import ModelNotFoundError

ALLOWED_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "boundaries/*"]


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """Fetch ``repo_id`` at ``revision`` into the huggingface_hub cache; return the snapshot dir."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=ALLOWED_PATTERNS)
        )
    except LocalEntryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{repo_id}@{revision or 'main'}: not in the local cache and the Hub is unreachable "
            f"or offline mode is on ({type(exc).__name__})"
        ) from None
    except HfHubHTTPError as exc:
        raise ModelNotFoundError(f"{repo_id}@{revision or 'main'}: download failed ({exc})") from None
