"""A stand-in for the Hugging Face Hub: a real HTTP server on 127.0.0.1 for tests.

It implements the parts of the Hub protocol that huggingface_hub 2.4 uses to download and
upload model repos, faithfully enough that the real client runs unmodified against it
(``HF_ENDPOINT=<hub.url>``):

Downloads
    ``HEAD/GET /{repo}/resolve/{rev}/{path}`` → ``X-Repo-Commit``, ``ETag`` (sha256 for LFS
    files, git blob id otherwise), ``Content-Length``, ranges;
    ``GET /api/models/{repo}[/revision/{rev}]`` → ``{"id", "sha", "siblings": [...]}``;
    ``GET /api/models/{repo}/tree/{rev}[/{path}]`` → ``[{"type", "path", "size", "oid", "lfs"}]``.
Errors (as the Hub sends them)
    unknown repo → 401 (anonymous) / 404 (with a token) + ``X-Error-Code: RepoNotFound``;
    private repo without the token → 401 + ``RepoNotFound``; gated repo → 401 + ``GatedRepo``;
    unknown revision → 404 + ``RevisionNotFound``; unknown file → 404 + ``EntryNotFound``.
Uploads (legacy LFS path, i.e. ``HF_HUB_DISABLE_XET=1``)
    ``POST /api/repos/create``, ``POST /api/models/{repo}/branch/{branch}``,
    ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}``,
    ``POST /{repo}.git/info/lfs/objects/batch`` + ``PUT /_lfs/{oid}``,
    ``POST /api/models/{repo}/commit/{rev}`` (NDJSON).

Switches: :meth:`StandinHub.corrupt` serves a file truncated (``"truncate"``: fewer bytes with a
consistent ``Content-Length`` while HEAD announces the full size) or with flipped bytes
(``"flip"``: same size, wrong content). :attr:`StandinHub.requests` logs ``(method, path)``.
:func:`closed_port_url` and :func:`blackhole` give endpoints that refuse connections or never
answer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_TOKEN = "hf_standin_token_0123456789"
LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".npy", ".pkl", ".png", ".gz")


def git_oid(data: bytes) -> str:
    """Git blob id (sha1 of ``"blob <size>\\0" + data``), as the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.lower().endswith(LFS_SUFFIXES)


def read_folder(folder: str | Path) -> dict[str, bytes]:
    """All files under ``folder`` as ``{posix relative path: bytes}``."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass
class Repo:
    """One model repo: commits (sha → files) and refs (branch/tag → sha)."""

    repo_id: str
    private: bool = False
    gated: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        if rev in self.commits:
            return rev
        return None


class StandinHub:
    """The server and its state. Use as a context manager or call :meth:`start`/:meth:`close`.

    Args:
        token: the one access token that grants access to private repos and uploads.
    """

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.corruptions: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | str | Path | None = None,
        *,
        private: bool = False,
        gated: bool = False,
        branch: str = "main",
        sha: str | None = None,
    ) -> str | None:
        """Create a repo, optionally with a first commit on ``branch``; returns its sha.

        ``sha`` gives the commit a chosen id (e.g. a real repo's pinned commit)."""
        with self.lock:
            self.repos[repo_id] = Repo(repo_id, private=private, gated=gated)
            if files is None:
                return None
            return self.commit(repo_id, files, branch=branch, sha=sha)

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes] | str | Path,
        *,
        branch: str = "main",
        deletions: tuple[str, ...] = (),
        sha: str | None = None,
    ) -> str:
        """Add a commit on ``branch`` (its files = the parent's, updated by ``files``); ``sha``
        (40 hex digits) names it instead of a hash of its content."""
        if not isinstance(files, dict):
            files = read_folder(files)
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.refs.get(branch) or repo.refs.get("main")
            tree = dict(repo.commits.get(parent, {})) if parent else {}
            for path in deletions:
                tree.pop(path, None)
            tree.update(files)
            tree.setdefault(
                ".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            )
            self._counter += 1
            listing = json.dumps(
                [parent, self._counter, sorted((p, git_oid(d)) for p, d in tree.items())]
            )
            if sha is None:
                sha = hashlib.sha1(listing.encode()).hexdigest()
            assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha), sha
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def tag(self, repo_id: str, name: str, sha: str) -> None:
        with self.lock:
            self.repos[repo_id].refs[name] = sha

    def corrupt(self, repo_id: str, path: str, mode: str | None) -> None:
        """Serve ``path`` of ``repo_id`` broken on GET: ``"truncate"``, ``"flip"`` or ``None``."""
        with self.lock:
            if mode is None:
                self.corruptions.pop((repo_id, path), None)
            else:
                assert mode in ("truncate", "flip"), mode
                self.corruptions[(repo_id, path)] = mode

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        with self.lock:
            repo = self.repos[repo_id]
            return dict(repo.commits[repo.resolve(rev)])

    def requested(self, method: str | None = None, contains: str = "") -> list[str]:
        """Paths requested so far (optionally filtered by method and substring)."""
        with self.lock:
            return [
                p for m, p in self.requests if (method is None or m == method) and contains in p
            ]

    # ----------------------------------------------------------------- server
    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandinHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandinHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HttpError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class _Handler(BaseHTTPRequestHandler):
    hub: StandinHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    # -------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        with self.hub.lock:
            self.hub.requests.append((method, unquote(parts.path)))
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        try:
            self._route(method, parts.path, parse_qs(parts.query), body)
        except _HttpError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(
                err.status,
                json.dumps({"error": err.message}).encode(),
                headers,
                head=method == "HEAD",
            )

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        head: bool = False,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode())

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization") or ""
        return auth == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.repos.get(repo_id)
        has_token = bool(self.headers.get("Authorization"))
        if repo is None or (repo.private and not self._authorized()):
            # The Hub hides private repos: anonymous → 401, authenticated → 404.
            status = 404 if has_token else 401
            raise _HttpError(status, "RepoNotFound", "Repository not found")
        if repo.gated and not self._authorized():
            raise _HttpError(401, "GatedRepo", "Access to this model is restricted")
        return repo

    def _commit(self, repo: Repo, rev: str) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise _HttpError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha

    # --------------------------------------------------------------- routing
    def _route(self, method: str, raw_path: str, query: dict, body: bytes) -> None:
        segs = [unquote(s) for s in raw_path.split("/")[1:]]
        if segs[:2] == ["api", "models"] and len(segs) >= 4:
            repo_id = f"{segs[2]}/{segs[3]}"
            rest = segs[4:]
            if method in ("GET", "HEAD") and (not rest or rest[0] == "revision"):
                return self._info(repo_id, rest[1] if len(rest) > 1 else "main")
            if method == "GET" and rest and rest[0] == "tree":
                return self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
            if method == "POST" and rest and rest[0] == "preupload":
                return self._preupload(repo_id, rest[1], body)
            if method == "POST" and rest and rest[0] == "commit":
                return self._commit_api(repo_id, rest[1], body)
            if method == "POST" and rest and rest[0] == "branch":
                return self._branch(repo_id, rest[1], body)
        if segs[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create(body)
        if segs[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._json({"errors": [], "warnings": []})
        if segs and segs[0] == "_lfs" and method == "PUT":
            return self._lfs_put(segs[1], body)
        if len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]), method)
        if (
            len(segs) == 6
            and segs[1].endswith(".git")
            and segs[2:] == ["info", "lfs", "objects", "batch"]
        ):
            return self._lfs_batch(f"{segs[0]}/{segs[1][:-4]}", body)
        raise _HttpError(404, None, f"no route for {method} {raw_path}")

    # ------------------------------------------------------------- downloads
    def _info(self, repo_id: str, rev: str) -> None:
        with self.hub.lock:
            repo = self._repo(repo_id)
            sha = self._commit(repo, rev)
            files = repo.commits[sha]
        siblings = []
        for path, data in sorted(files.items()):
            entry: dict = {"rfilename": path, "size": len(data), "blobId": git_oid(data)}
            if is_lfs(path):
                entry["lfs"] = {"sha256": sha256(data), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        self._json(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": repo.private,
                "gated": repo.gated,
                "disabled": False,
                "tags": [],
                "library_name": "idinvert",
                "lastModified": "2026-01-01T00:00:00.000Z",
                "siblings": siblings,
            }
        )

    def _tree(self, repo_id: str, rev: str, prefix: str, query: dict) -> None:
        recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
        with self.hub.lock:
            repo = self._repo(repo_id)
            files = repo.commits[self._commit(repo, rev)]
        base = prefix.strip("/")
        entries, dirs = [], set()
        for path, data in sorted(files.items()):
            if base and not path.startswith(base + "/"):
                continue
            rel = path[len(base) + 1 :] if base else path
            if "/" in rel and not recursive:
                dirs.add((base + "/" if base else "") + rel.split("/")[0])
                continue
            for i in range(rel.count("/")):
                dirs.add((base + "/" if base else "") + "/".join(rel.split("/")[: i + 1]))
            entry: dict = {"type": "file", "path": path, "size": len(data), "oid": git_oid(data)}
            if is_lfs(path):
                entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [
            {"type": "directory", "path": d, "size": 0, "oid": git_oid(d.encode())}
            for d in sorted(dirs)
        ]
        self._json(entries)

    def _resolve(self, repo_id: str, rev: str, path: str, method: str) -> None:
        with self.hub.lock:
            repo = self._repo(repo_id)
            sha = self._commit(repo, rev)
            data = repo.commits[sha].get(path)
            mode = self.hub.corruptions.get((repo_id, path))
        if data is None:
            raise _HttpError(
                404, "EntryNotFound", f"{path} does not exist on {rev}", {"X-Repo-Commit": sha}
            )
        etag = sha256(data) if is_lfs(path) else git_oid(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if is_lfs(path):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        if method == "HEAD":
            return self._send(
                200, data, headers, head=True, content_type="application/octet-stream"
            )
        if mode == "truncate":
            data = data[: max(1, len(data) // 2)]
        elif mode == "flip":
            mid = len(data) // 2
            data = data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :]
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[6:].partition("-")
            start = int(start_s or 0)
            end = int(end_s) if end_s else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(
                206, data[start : end + 1], headers, content_type="application/octet-stream"
            )
        self._send(200, data, headers, content_type="application/octet-stream")

    # --------------------------------------------------------------- uploads
    def _require_token(self) -> None:
        if not self._authorized():
            raise _HttpError(401, None, "Invalid credentials in Authorization header")

    def _create(self, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body or b"{}")
        repo_id = f"{payload.get('organization') or 'standin-user'}/{payload['name']}"
        private = payload.get("private") or payload.get("visibility") == "private"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                raise _HttpError(
                    409, None, "You already created this model repo", {"X-Error-Code": "RepoExists"}
                )
            self.hub.add_repo(repo_id, private=bool(private))
            self.hub.commit(repo_id, {}, branch="main")
        self._json({"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _branch(self, repo_id: str, branch: str, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body or b"{}")
        with self.hub.lock:
            repo = self._repo(repo_id)
            if branch in repo.refs:
                raise _HttpError(409, None, f"Branch {branch} already exists")
            start = repo.resolve(payload.get("startingPoint") or "main")
            repo.refs[branch] = start or self.hub.commit(repo_id, {}, branch="main")
        self._json({"success": True})

    def _preupload(self, repo_id: str, rev: str, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body)
        with self.hub.lock:
            repo = self._repo(repo_id)
            sha = repo.resolve(rev)
            existing = repo.commits.get(sha, {}) if sha else {}
        files = []
        for f in payload["files"]:
            old = existing.get(f["path"])
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if is_lfs(f["path"]) else "regular",
                    "shouldIgnore": False,
                    "oid": git_oid(old) if old is not None else None,
                }
            )
        self._json({"files": files})

    def _lfs_batch(self, repo_id: str, body: bytes) -> None:
        self._require_token()
        with self.hub.lock:
            self._repo(repo_id)
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs_store:
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/_lfs/{obj['oid']}"}}
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if sha256(body) != oid:
            raise _HttpError(400, None, "sha256 mismatch")
        with self.hub.lock:
            self.hub.lfs_store[oid] = body
        self._send(200, b"")

    def _commit_api(self, repo_id: str, rev: str, body: bytes) -> None:
        self._require_token()
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        files: dict[str, bytes] = {}
        deletions = []
        summary = ""
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                with self.hub.lock:
                    data = self.hub.lfs_store.get(value["oid"])
                if data is None:
                    raise _HttpError(400, None, f"LFS object {value['oid']} was not uploaded")
                files[value["path"]] = data
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append(value["path"])
        with self.hub.lock:
            repo = self._repo(repo_id)
            if rev not in repo.refs:
                raise _HttpError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            sha = self.hub.commit(repo_id, files, branch=rev, deletions=tuple(deletions))
        self._json(
            {
                "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                "commitOid": sha,
                "success": True,
                "summary": summary,
                "pullRequestUrl": None,
            }
        )


def closed_port_url() -> str:
    """URL of a 127.0.0.1 port nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """URL of a 127.0.0.1 port that accepts TCP connections but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# ------------------------------------------------------------------ helpers for CLI tests
_SCRUB_PREFIXES = ("HF_", "HUGGING_FACE_", "IDINVERT_", "TRANSFORMERS_OFFLINE")


def cli_env(home: Path, endpoint: str | None, **extra: str) -> dict[str, str]:
    """Environment for an ``idinvert`` subprocess: isolated HF cache/config, the given endpoint,
    no VGG16 weights (fast; the LPIPS tests cover them), one CPU thread."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.update(
        {
            "HF_HOME": str(home / "hf"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "XDG_CONFIG_HOME": str(home / "config"),
            "IDINVERT_VGG16": "none",
            "OMP_NUM_THREADS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    env.update(extra)
    return env


def idinvert_cmd() -> list[str]:
    """The ``idinvert`` console script of the running interpreter's environment."""
    import sys

    script = Path(sys.executable).with_name("idinvert")
    return [str(script)] if script.exists() else [sys.executable, "-m", "idinvert.cli.main"]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None):
    """Run ``idinvert ARGS``; returns the ``CompletedProcess`` (text, captured output)."""
    import subprocess

    return subprocess.run(
        [*idinvert_cmd(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


# ------------------------------------------------------------------ files the Hub holds
def timm_vgg16_layout(hidden: int = 4096, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """``timm/vgg16.tv_in1k``'s ``model.safetensors``, key → shape, from the documented layouts:
    torchvision's ``vgg16().features`` convs (shapes taken from torchvision's own architecture,
    not from idinvert) and timm's head: ``pre_logits`` (``ConvMlp``: the classifier's first two
    Linear layers as 7x7 and 1x1 convs) and ``head.fc`` (``ClassifierHead``). The defaults are
    the real file's; smaller ``hidden``/``classes`` keep the names with a smaller head."""
    import torch
    from torchvision.models import vgg

    with torch.device("meta"):
        features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    layout = {f"features.{k}": tuple(v.shape) for k, v in features.state_dict().items()}
    layout.update(
        {
            "pre_logits.fc1.weight": (hidden, 512, 7, 7),
            "pre_logits.fc1.bias": (hidden,),
            "pre_logits.fc2.weight": (hidden, hidden, 1, 1),
            "pre_logits.fc2.bias": (hidden,),
            "head.fc.weight": (classes, hidden),
            "head.fc.bias": (classes,),
        }
    )
    return layout
