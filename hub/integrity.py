"""Integrity checks of downloaded files and eviction of bad ones from the Hugging Face cache.

A file fetched from the Hub is checked against what the Hub says it is:

* its size (Hub metadata);
* its content hash: the sha256 of LFS files (the Hub's ETag *and* ``lfs.sha256``) or the git
  blob id (sha1 of ``"blob <size>\\0" + content``) of regular files;
* for ``.safetensors``, that the header parses and the tensors fit in the file.

In the cache, ``snapshots/<commit>/<path>`` is a symlink to ``blobs/<etag>``, so the expected
hash is also known offline from the blob's name. A file that fails is removed (symlink and blob)
so that the next run downloads it again instead of failing forever.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Largest safetensors header we accept (the format's own limit is 100 MB).
MAX_SAFETENSORS_HEADER = 100_000_000


@dataclass(frozen=True)
class ExpectedFile:
    """What the Hub says about one file of a commit.

    Attributes:
        path: path in the repo.
        size: size in bytes (``None`` if unknown).
        sha256: sha256 of the content (LFS files), lower-case hex.
        git_oid: git blob id (sha1) of the content (regular files), lower-case hex.
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    git_oid: str | None = None


@dataclass(frozen=True)
class FileReport:
    """Result of checking one file: ``problem`` is ``None`` when the file is good."""

    path: str
    size: int
    sha256: str | None
    problem: str | None


def hash_file(
    path: str | Path, *, sha256: bool = True, git: bool = False
) -> tuple[str | None, str | None]:
    """One pass over ``path``: (sha256 hex or ``None``, git blob sha1 hex or ``None``)."""
    path = Path(path)
    h256 = hashlib.sha256() if sha256 else None
    hgit = None
    if git:
        hgit = hashlib.sha1(usedforsecurity=False)
        hgit.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if h256 is not None:
                h256.update(chunk)
            if hgit is not None:
                hgit.update(chunk)
    return (h256.hexdigest() if h256 else None, hgit.hexdigest() if hgit else None)


def safetensors_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete safetensors file, or ``None`` if its header is sound.

    Reads only the header: the 8-byte length, the JSON, and checks that every tensor's
    ``data_offsets`` lie inside the file and that the data section is exactly covered.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, too short for a safetensors file"
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > min(MAX_SAFETENSORS_HEADER, size - 8):
            return f"header length {n} does not fit in the file ({size} bytes)"
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"unreadable safetensors header ({exc})"
    if not isinstance(header, dict):
        return "safetensors header is not a JSON object"
    data = size - 8 - n
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has no valid data_offsets"
        end = max(end, int(offsets[1]))
    if end != data:
        return f"tensor data needs {end} bytes but the file holds {data} (truncated or padded)"
    return None


def cached_etag(pointer: Path) -> str | None:
    """The ETag a cached file was downloaded under (the name of its blob), if known."""
    if pointer.is_symlink():
        blob = pointer.resolve()
        if blob.parent.name == "blobs":
            return blob.name
    return None


def check_file(pointer: Path, expected: ExpectedFile | None, *, full: bool) -> FileReport:
    """Check one cached file.

    Args:
        pointer: the file in the snapshot folder.
        expected: the Hub's metadata for it (``None`` offline: the blob name is used).
        full: hash the content (else only size and, for safetensors, the header).
    """
    rel = expected.path if expected else pointer.name
    if not pointer.exists():
        return FileReport(rel, 0, None, "missing")
    size = pointer.stat().st_size
    if expected is not None and expected.size is not None and size != expected.size:
        return FileReport(rel, size, None, f"{size} bytes instead of {expected.size}")
    etag = cached_etag(pointer)
    want_sha = (expected.sha256 if expected else None) or (
        etag if etag and _HEX64.fullmatch(etag) else None
    )
    want_git = (expected.git_oid if expected else None) or (
        etag if etag and _HEX40.fullmatch(etag) else None
    )
    digest = None
    if full and (want_sha or want_git):
        digest, git_oid = hash_file(pointer, sha256=True, git=want_sha is None)
        if want_sha and digest != want_sha:
            return FileReport(
                rel, size, digest, f"sha256 {digest[:16]}... but the Hub says {want_sha[:16]}..."
            )
        if want_sha is None and want_git and git_oid != want_git:
            return FileReport(
                rel,
                size,
                digest,
                f"git blob id {git_oid[:16]}... but the Hub says {want_git[:16]}...",
            )
    if pointer.suffix == ".safetensors":
        problem = safetensors_problem(pointer)
        if problem:
            return FileReport(rel, size, digest, problem)
    logger.debug(
        "checked %s: %d bytes, sha256 %s, etag %s", rel, size, digest or "(not hashed)", etag
    )
    return FileReport(rel, size, digest, None)


def evict(pointer: Path) -> None:
    """Remove a bad file from the cache: the snapshot entry and the blob it points to."""
    blob = pointer.resolve() if pointer.is_symlink() else None
    pointer.unlink(missing_ok=True)
    if blob is not None and blob.parent.name == "blobs":
        blob.unlink(missing_ok=True)
    logger.debug("evicted %s (blob %s) from the cache", pointer, blob)
