"""Publishing a model directory to the Hugging Face Hub (``idinvert hub publish``).

Steps: validate the directory by loading it (weights, config, boundaries), write the model card
``README.md`` into it, then upload with ``HfApi.upload_folder`` (one commit) only what
:func:`idinvert.hub.download.is_model_file` accepts: top-level ``*.safetensors``, ``*.json``,
``*.md`` and ``boundaries/*.safetensors|json``. A dry run stops after the card and reports what
would be uploaded (sizes, sha256).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idinvert.core.errors import IdinvertError, ModelFormatError
from idinvert.hub.card import GENERATED_MARKER, CardBoundary, CardFile, render_card
from idinvert.hub.download import is_model_file
from idinvert.hub.integrity import hash_file

logger = logging.getLogger(__name__)


class PublishError(IdinvertError):
    """The upload failed (authentication, network, Hub error)."""


@dataclass
class PublishPlan:
    """What :func:`publish` uploads.

    Attributes:
        model_dir: the validated model directory.
        repo_id: target ``owner/name``.
        files: uploaded files (path in repo, size, sha256), the card included.
        skipped: files of the directory that are not uploaded.
        card_written: whether ``README.md`` was (re)generated.
    """

    model_dir: Path
    repo_id: str
    files: list[CardFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    card_written: bool = True

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _check_repo_id(repo_id: str) -> None:
    from idinvert.hub.resolve import parse_repo_reference

    parsed = parse_repo_reference(repo_id)
    if parsed is None or parsed[1] is not None:
        raise ValueError(
            f"--repo-id {repo_id!r}: expected owner/name (no @revision; use --revision)"
        )


def _boundaries(model_dir: Path, num_layers: int, w_dim: int) -> list[CardBoundary]:
    from idinvert.core.boundaries import load_boundary, model_boundaries

    out = []
    for name, path in model_boundaries(model_dir).items():
        b = load_boundary(path)
        rows, dim = b.direction.shape
        if dim != w_dim or rows not in (1, num_layers):
            raise ModelFormatError(
                f"{path}: boundary is [{rows}, {dim}] but the model's codes are "
                f"[{num_layers}, {w_dim}]"
            )
        if any(i >= num_layers for i in b.layers):
            raise ModelFormatError(f"{path}: default layers {b.layers} exceed L = {num_layers}")
        out.append(CardBoundary(name, list(b.layers), b.source))
    return out


def prepare(
    model_dir: str | Path,
    repo_id: str,
    *,
    license: str | None = None,  # noqa: A002
    keep_card: bool = False,
) -> PublishPlan:
    """Validate ``model_dir``, write its model card, list what would be uploaded.

    Args:
        model_dir: an idinvert model directory.
        repo_id: target ``owner/name`` (named in the card's usage examples).
        license: Hub licence id for the card (default: ``config.json`` provenance ``license``,
            else ``other``).
        keep_card: keep an existing ``README.md`` instead of regenerating it.

    Raises:
        ModelFormatError: the directory does not load (weights, config or boundaries).
        ValueError: malformed ``repo_id``.
    """
    from idinvert.core.modeldir import CARD_FILE, load_model_dir

    _check_repo_id(repo_id)
    model_dir = Path(model_dir)
    bundle = load_model_dir(model_dir, "cpu")
    config = bundle.config
    boundaries = _boundaries(model_dir, bundle.num_layers, bundle.w_dim)
    params = {
        name: sum(p.numel() for p in net.parameters())
        for name, net in (
            ("generator", bundle.generator),
            ("encoder", bundle.encoder),
            ("perceptual", bundle.perceptual),
        )
        if net is not None
    }
    card_path = model_dir / CARD_FILE
    plan = PublishPlan(model_dir, repo_id)
    weights = []
    for p in sorted(model_dir.rglob("*")):
        rel = p.relative_to(model_dir).as_posix()
        if not p.is_file() or rel == CARD_FILE:
            continue
        if is_model_file(rel):
            digest, _ = hash_file(p)
            weights.append(CardFile(rel, p.stat().st_size, digest or ""))
        else:
            plan.skipped.append(rel)
    if keep_card and card_path.is_file():
        plan.card_written = False
    else:
        lic = license or str(config.provenance.get("license") or "other")
        text = render_card(
            config,
            repo_id=repo_id,
            params=params,
            files=weights,
            boundaries=boundaries,
            license=lic,
        )
        if card_path.is_file() and GENERATED_MARKER not in card_path.read_text(errors="replace"):
            logger.warning(
                "%s: replacing a hand-written model card (use --keep-card to keep it)", card_path
            )
        card_path.write_text(text, encoding="utf-8")
    digest, _ = hash_file(card_path)
    plan.files = [CardFile(CARD_FILE, card_path.stat().st_size, digest or ""), *weights]
    for f in plan.files:
        logger.debug("to upload: %s %d bytes sha256 %s", f.path, f.size, f.sha256)
    return plan


def publish(
    plan: PublishPlan,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Any:
    """Create the repo (if needed) and the branch, then upload the plan's files in one commit.

    Returns:
        huggingface_hub's ``CommitInfo`` (``.oid`` is the commit hash to pin).

    Raises:
        PublishError: one-line message (authentication, network, Hub error).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from idinvert.hub.download import first_line, transport_errors

    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    message = commit_message or f"Upload idinvert model {plan.model_dir.name}"
    try:
        api.create_repo(plan.repo_id, private=private, exist_ok=True, repo_type="model")
        if branch != "main":
            api.create_branch(plan.repo_id, branch=branch, exist_ok=True, repo_type="model")
        return api.upload_folder(
            repo_id=plan.repo_id,
            folder_path=plan.model_dir,
            repo_type="model",
            allow_patterns=[f.path for f in plan.files],  # exact paths: nothing else
            revision=branch,
            commit_message=message,
        )
    except transport_errors() as exc:
        raise PublishError(
            f"cannot reach the Hugging Face Hub at {api.endpoint} to publish {plan.repo_id} "
            f"({first_line(exc)})"
        ) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", 0)
        hint = (
            (
                ": set HF_TOKEN (or run `hf auth login`) with a token that has write access to "
                f"{plan.repo_id.split('/')[0]}"
            )
            if status in (401, 403)
            else ""
        )
        raise PublishError(
            f"publishing {plan.repo_id}@{branch} failed ({first_line(exc)}){hint}"
        ) from None
