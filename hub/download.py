"""Model directories from the Hugging Face Hub: safetensors, JSON and text only, verified.

:func:`download_model` fetches ``owner/name@revision`` into huggingface_hub's cache and returns
the snapshot folder (a model directory). What it guarantees:

* **Time bound.** The revision is first resolved with one metadata call that has a timeout
  (``IDINVERT_HUB_TIMEOUT``, default 10 s; connection refused fails at once). If the Hub cannot
  be reached, a cached snapshot of the same revision is used; else the error says so in seconds
  instead of huggingface_hub's ~23 s of retries.
* **Offline.** ``HF_HUB_OFFLINE=1`` resolves from the cache only (branches through the cache's
  ``refs/``); a revision that is a commit hash and is fully cached needs no network at all.
* **No pickles.** Only top-level ``*.safetensors``, ``*.json`` and ``*.md`` files and
  ``boundaries/*.safetensors|json`` are downloaded (:func:`is_model_file`); ``.bin``/``.pth``/
  ``.pt``/``.ckpt``/``.pkl``/``.npy`` files in a repo are never fetched, and a repo holding only
  pickles is refused.
* **Integrity.** Every newly downloaded file is checked against the Hub's size and sha256 (git
  blob id for small files) and safetensors headers are validated; a bad file is removed from the
  cache and the error says to re-run. Sizes and checksums are logged at debug level.
* **Errors** are :class:`~idinvert.core.errors.ModelNotFoundError` with a one-line message naming
  the repo, the revision and the file, and what to do (typo, offline, private repo + HF_TOKEN).

``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` are honoured
as huggingface_hub honours them (the first two are read when huggingface_hub is imported).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from idinvert.core.errors import ModelNotFoundError
from idinvert.hub import settings
from idinvert.hub.integrity import ExpectedFile, check_file, evict

logger = logging.getLogger(__name__)

#: Suffixes of the files of a model directory that are transferred (top level), and of those
#: in ``boundaries/``; everything else (pickles above all) is never downloaded or uploaded.
SAFE_SUFFIXES: tuple[str, ...] = (".safetensors", ".json", ".md")
BOUNDARY_SUFFIXES: tuple[str, ...] = (".safetensors", ".json")
#: The same rule as glob patterns, for huggingface_hub's ``allow_patterns``.
ALLOWED_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.json",
    "*.md",
    "boundaries/*.safetensors",
    "boundaries/*.json",
)
REQUIRED_FILES: tuple[str, ...] = ("config.json", "generator.safetensors", "encoder.safetensors")
#: File types that can carry code when loaded (pickle-based); never downloaded.
PICKLE_SUFFIXES: tuple[str, ...] = (
    ".bin",
    ".pth",
    ".pt",
    ".ckpt",
    ".pkl",
    ".pickle",
    ".npy",
    ".npz",
    ".joblib",
    ".h5",
)
_COMMIT = re.compile(r"[0-9a-f]{40}")
#: Download order: optional files first, then the weights, config.json last, so that a cached
#: snapshot that holds config.json is complete (an interrupted download lacks a required file).
_LAST = ("perceptual.safetensors", "generator.safetensors", "encoder.safetensors", "config.json")


class CorruptDownloadError(ModelNotFoundError):
    """A downloaded file does not match the Hub's size/checksum (it was removed from the cache)."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` (as huggingface_hub read it at import, or as set now)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def transport_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning 'the Hub could not be reached' for the installed HTTP stack."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    errors: list[type[BaseException]] = [OfflineModeIsEnabled]
    for module, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        errors += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return tuple(errors)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def is_model_file(path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is transferred: top-level ``*.safetensors``,
    ``*.json``, ``*.md`` and ``boundaries/*.safetensors|json``; no hidden files, no pickles."""
    parts = path.split("/")
    if any(not p or p.startswith(".") for p in parts):
        return False
    if len(parts) == 1:
        return path.endswith(SAFE_SUFFIXES)
    return len(parts) == 2 and parts[0] == "boundaries" and path.endswith(BOUNDARY_SUFFIXES)


def _order_key(path: str) -> tuple[int, str]:
    return (_LAST.index(path) + 1 if path in _LAST else 0, path)


def _storage_folder(repo_id: str, cache_dir: Path) -> Path:
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def _cache_dir(cache_dir: str | Path | None) -> Path:
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser().resolve()


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def _token_set(token: str | None) -> bool:
    if token:
        return True
    from huggingface_hub import get_token

    try:
        return get_token() is not None
    except Exception:  # noqa: BLE001 - a broken token store means "no usable token"
        return False


class _Ctx:
    """Names used in every message: repo, revision, endpoint, cache."""

    def __init__(self, repo_id: str, revision: str, endpoint: str, cache: Path, token: str | None):
        self.repo_id, self.revision, self.endpoint, self.cache = repo_id, revision, endpoint, cache
        self.token = token

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision}"

    def not_found(self) -> str:
        token = (
            " (the token now in use, from HF_TOKEN or `hf auth login`, has no access to it)"
            if _token_set(self.token)
            else ""
        )
        return (
            f"model repo {self.repo_id!r} not found on {self.endpoint} (or not accessible): check "
            "the spelling of owner/name; if the repo is private, set HF_TOKEN (or run `hf auth "
            f"login`) to a token that can read it{token}"
        )

    def revision_not_found(self) -> str:
        return (
            f"model repo {self.repo_id!r} has no revision {self.revision!r} (branch, tag or "
            f"commit hash): check the part after '@'"
        )

    def gated(self) -> str:
        return (
            f"model repo {self.repo_id!r} is gated: accept its conditions on "
            f"{self.endpoint}/{self.repo_id} and set HF_TOKEN to a token of that account"
        )

    def unreachable(self, exc: BaseException, seconds: float, cached_problem: str) -> str:
        return (
            f"cannot reach the Hugging Face Hub at {self.endpoint} ({first_line(exc)}; gave "
            f"up after {seconds:.1f}s) and {self.label} {cached_problem} in the local cache "
            f"{self.cache}: check your connection, proxy or HF_ENDPOINT, or download it once "
            "while online (afterwards HF_HUB_OFFLINE=1 works without network)"
        )

    def offline(self, cached_problem: str) -> str:
        return (
            f"HF_HUB_OFFLINE is set and {self.label} {cached_problem} in the local cache "
            f"{self.cache}: run once without HF_HUB_OFFLINE to download it (e.g. "
            f"`idinvert hub download {self.label}`), or pass a local model directory"
        )


def _from_cache(ctx: _Ctx) -> Path:
    """The cached snapshot of ``ctx``'s revision; raises ``LookupError(reason)`` if unusable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(
            snapshot_download(
                ctx.repo_id,
                revision=ctx.revision,
                cache_dir=ctx.cache,
                local_files_only=True,
                allow_patterns=list(ALLOWED_PATTERNS),
            )
        )
    except LocalEntryNotFoundError as exc:
        incomplete = type(exc).__name__ == "IncompleteSnapshotError"
        raise LookupError("is only partly" if incomplete else "is not") from None
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise LookupError(f"is only partly (missing {', '.join(missing)})")
    return folder


def _verify(
    ctx: _Ctx, folder: Path, files: list[str], expected: dict[str, ExpectedFile], fresh: set[str]
) -> None:
    """Check ``files`` in ``folder``; evict and raise on the first bad one."""
    for rel in files:
        pointer = folder / rel
        report = check_file(pointer, expected.get(rel) or ExpectedFile(rel), full=rel in fresh)
        if report.problem is not None:
            evict(pointer)
            raise CorruptDownloadError(
                f"{ctx.label}: downloaded file {rel} is corrupted or incomplete "
                f"({report.problem}); it was removed from the cache {ctx.cache}, re-run the "
                "command to download it again"
            )


def _plan(ctx: _Ctx, siblings: list[Any]) -> tuple[list[str], dict[str, ExpectedFile]]:
    """Files to fetch (ordered) and the Hub's metadata of each; refuses pickles-only repos."""
    names = [s.rfilename for s in siblings]
    wanted = sorted((n for n in names if is_model_file(n)), key=_order_key)
    pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
    missing = [f for f in REQUIRED_FILES if f not in names]
    if missing:
        if pickles:
            raise ModelNotFoundError(
                f"{ctx.label} holds pickle-based files ({', '.join(pickles[:4])}) and no "
                f"{', '.join(missing)}; idinvert never loads pickles from the Hub. Download the "
                "official checkpoints yourself, convert them with `idinvert convert`, and publish "
                "the result with `idinvert hub publish`"
            )
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") or "no files"
        raise ModelNotFoundError(
            f"{ctx.label} is not an idinvert model directory: missing {', '.join(missing)} "
            f"(repo has {shown}); publish model directories with `idinvert hub publish`"
        )
    if pickles:
        logger.info(
            "%s: ignoring %d pickle-based file(s) (%s); they are never downloaded",
            ctx.label,
            len(pickles),
            ", ".join(pickles[:4]),
        )
    expected = {}
    for s in siblings:
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(s, "size", None)
        if size is None and lfs is not None:
            size = getattr(lfs, "size", None)
        expected[s.rfilename] = ExpectedFile(
            s.rfilename, size, sha, None if sha else getattr(s, "blob_id", None)
        )
    return wanted, expected


def _write_ref(ctx: _Ctx, commit: str) -> None:
    """Record branch/tag → commit in the cache's ``refs/`` (huggingface_hub's documented layout),
    so that the revision resolves offline later."""
    if ctx.revision == commit:
        return
    ref = _storage_folder(ctx.repo_id, ctx.cache) / "refs" / ctx.revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.is_file() or ref.read_text().strip() != commit:
            tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
            tmp.write_text(commit)
            os.replace(tmp, ref)
    except OSError as exc:
        logger.warning("could not record %s -> %s in the cache: %s", ctx.label, commit, exc)


def download_model(
    repo_id: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> Path:
    """Fetch the model directory ``repo_id`` at ``revision`` and return its cached snapshot.

    Args:
        repo_id: ``owner/name`` on the Hub.
        revision: branch, tag or commit hash (default ``main``). Pin a commit hash for
            reproducible results.
        cache_dir: huggingface_hub cache (default: ``HF_HUB_CACHE``).
        endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).
        token: access token (default: ``HF_TOKEN`` / the stored login).
        timeout: seconds to wait for the Hub (default :func:`settings.hub_timeout`).

    Returns:
        ``<cache>/models--owner--name/snapshots/<commit>`` holding the model directory.

    Raises:
        ModelNotFoundError: one-line message naming repo, revision, file and what to do.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    ctx = _Ctx(repo_id, revision or "main", _endpoint(endpoint), _cache_dir(cache_dir), token)
    if is_offline():
        try:
            return _cached_and_checked(ctx)
        except LookupError as exc:
            raise ModelNotFoundError(ctx.offline(str(exc))) from None
    if _COMMIT.fullmatch(ctx.revision):
        try:  # a pinned commit that is fully cached needs no network
            return _cached_and_checked(ctx)
        except LookupError:
            pass

    timeout = timeout if timeout is not None else settings.hub_timeout()
    api = HfApi(endpoint=ctx.endpoint, token=token)
    start = time.monotonic()
    try:
        info = api.model_info(repo_id, revision=ctx.revision, timeout=timeout, files_metadata=True)
    except transport_errors() as exc:
        return _fallback(ctx, exc, time.monotonic() - start)
    except GatedRepoError:
        raise ModelNotFoundError(ctx.gated()) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(ctx.not_found()) from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(ctx.revision_not_found()) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
        if status == 401:
            raise ModelNotFoundError(ctx.not_found()) from None
        if status >= 500:
            return _fallback(ctx, exc, time.monotonic() - start)
        raise ModelNotFoundError(f"{ctx.label}: the Hub answered {first_line(exc)}") from None
    commit = info.sha
    if not commit:
        raise ModelNotFoundError(f"{ctx.label}: the Hub did not report a commit for this revision")
    files, expected = _plan(ctx, list(info.siblings or []))
    blobs = _storage_folder(repo_id, ctx.cache) / "blobs"
    before = {p.name for p in blobs.iterdir()} if blobs.is_dir() else set()

    folder: Path | None = None
    for rel in files:
        try:
            path = Path(
                hf_hub_download(
                    repo_id,
                    rel,
                    revision=commit,
                    cache_dir=ctx.cache,
                    endpoint=ctx.endpoint,
                    token=token,
                    etag_timeout=timeout,
                )
            )
        except RemoteEntryNotFoundError:
            raise ModelNotFoundError(
                f"{ctx.label}: file {rel} is listed but cannot be downloaded (not found at commit "
                f"{commit[:12]}); the repo may be changing, try again or pin another revision"
            ) from None
        except (RepositoryNotFoundError, GatedRepoError):
            raise ModelNotFoundError(ctx.not_found()) from None
        except transport_errors() as exc:
            raise ModelNotFoundError(
                f"{ctx.label}: lost the connection to {ctx.endpoint} while downloading {rel} "
                f"({first_line(exc)}); nothing broken was cached, re-run the command"
            ) from None
        except OSError as exc:  # incl. huggingface_hub's size-consistency check, HTTP errors
            raise CorruptDownloadError(
                f"{ctx.label}: download of {rel} failed ({first_line(exc)}); the partial file "
                "was discarded, re-run the command"
            ) from None
        folder = path.parents[len(Path(rel).parts) - 1]
        # Check each file before fetching the next: config.json comes last, so a snapshot that
        # holds it is complete and verified.
        fresh = {rel} if (_blob_name(path) or "") not in before else set()
        _verify(ctx, folder, [rel], expected, fresh)
    assert folder is not None  # REQUIRED_FILES are always in `files`
    _write_ref(ctx, commit)
    return folder


def _blob_name(pointer: Path) -> str | None:
    return pointer.resolve().name if pointer.is_symlink() else None


def _cached_and_checked(ctx: _Ctx) -> Path:
    """Cached snapshot after a light check (sizes, safetensors headers); ``LookupError`` if none."""
    folder = _from_cache(ctx)
    files = sorted(
        (str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()),
        key=_order_key,
    )
    _verify(ctx, folder, [f for f in files if is_model_file(f)], {}, fresh=set())
    logger.debug("using cached snapshot %s", folder)
    return folder


def _fallback(ctx: _Ctx, exc: BaseException, seconds: float) -> Path:
    """The Hub is unreachable (or down): use the cache or explain."""
    try:
        folder = _cached_and_checked(ctx)
    except LookupError as reason:
        raise ModelNotFoundError(ctx.unreachable(exc, seconds, str(reason))) from None
    logger.warning(
        "the Hub at %s is unreachable (%s); using the cached snapshot of %s",
        ctx.endpoint,
        first_line(exc),
        ctx.label,
    )
    return folder
