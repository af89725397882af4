"""User settings of the hub layer: environment variables and the optional config file.

Everything is read at call time (never at import time), so a setting changed in the
environment of a running process takes effect on the next call.

Environment variables (they win over the config file):

``IDINVERT_CONFIG``
    Path of the config file (default: ``<user config dir>/idinvert/config.toml``).
``IDINVERT_MODEL_<NAME>``
    Points a registry name at a model reference, e.g.
    ``IDINVERT_MODEL_FFHQ256=someone/idinvert-ffhq256@<commit>``. ``<NAME>`` is the registry
    name upper-cased with every non-alphanumeric character replaced by ``_``.
``IDINVERT_HUB_TIMEOUT``
    Seconds to wait for the Hub before giving up (connect/read of the metadata calls; default 10).
``IDINVERT_VGG16`` / ``IDINVERT_VGG16_REPO``
    See :mod:`idinvert.hub.vgg_weights`.

Config file (TOML)::

    [models]                       # registry name -> model reference
    ffhq256 = "someone/idinvert-ffhq256@0123456789abcdef0123456789abcdef01234567"
    my-faces = "/data/models/my-faces"

    [weights]
    vgg16 = "/data/weights/vgg16-397923af.pth"     # like IDINVERT_VGG16
    vgg16_repo = "someone/vgg16-torchvision@main"    # like IDINVERT_VGG16_REPO
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from idinvert.core.errors import IdinvertError

logger = logging.getLogger(__name__)

CONFIG_ENV = "IDINVERT_CONFIG"
MODEL_ENV_PREFIX = "IDINVERT_MODEL_"
TIMEOUT_ENV = "IDINVERT_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT = 10.0


class SettingsError(IdinvertError, ValueError):
    """The config file or an idinvert environment variable is malformed."""


def user_config_dir() -> Path:
    """The per-user configuration folder of idinvert (not created)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "idinvert"


def config_path() -> Path:
    """Where the config file is read from (``IDINVERT_CONFIG`` or the user config dir)."""
    explicit = os.environ.get(CONFIG_ENV)
    return Path(explicit).expanduser() if explicit else user_config_dir() / "config.toml"


def load_config() -> dict[str, Any]:
    """Parse the config file; ``{}`` when there is none.

    Raises:
        SettingsError: the file exists but is not valid TOML (or no TOML parser is available).
    """
    path = config_path()
    if not path.is_file():
        if os.environ.get(CONFIG_ENV):
            raise SettingsError(f"{CONFIG_ENV}={path}: no such config file")
        return {}
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise SettingsError(
                f"{path}: reading TOML needs Python >= 3.11 or the 'tomli' package"
            ) from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: invalid TOML ({exc})") from None
    return data


def _table(name: str) -> dict[str, str]:
    data = load_config().get(name, {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SettingsError(f"{config_path()}: [{name}] must map names to strings")
    return dict(data)


def model_env_var(name: str) -> str:
    """Environment variable that points registry name ``name`` at a reference."""
    return MODEL_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def configured_models() -> dict[str, tuple[str, str]]:
    """Registry name → (reference, where the setting came from), env vars over the file."""
    out = {name: (ref, f"{config_path()} [models]") for name, ref in _table("models").items()}
    for key, value in os.environ.items():
        if key.startswith(MODEL_ENV_PREFIX) and value.strip():
            suffix = key[len(MODEL_ENV_PREFIX) :]
            # Env var names cannot hold '-' or '.': match them against the known names first.
            match = next((n for n in out if model_env_var(n) == key), None)
            out[match or suffix.lower()] = (value.strip(), key)
    return out


def configured_model(name: str) -> tuple[str, str] | None:
    """(reference, origin) configured for registry name ``name``, or ``None``."""
    env = os.environ.get(model_env_var(name), "").strip()
    if env:
        return env, model_env_var(name)
    ref = _table("models").get(name)
    return (ref, f"{config_path()} [models]") if ref else None


def weights_setting(key: str, env: str) -> tuple[str, str] | None:
    """(value, origin) of a ``[weights]`` setting, the environment variable ``env`` first."""
    value = os.environ.get(env, "").strip()
    if value:
        return value, env
    value = _table("weights").get(key, "").strip()
    return (value, f"{config_path()} [weights] {key}") if value else None


def hub_timeout() -> float:
    """Seconds to wait for the Hub: ``IDINVERT_HUB_TIMEOUT``, ``HF_HUB_ETAG_TIMEOUT`` or 10."""
    for var in (TIMEOUT_ENV, "HF_HUB_ETAG_TIMEOUT"):
        raw = os.environ.get(var, "").strip()
        if raw:
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{var}={raw!r} is not a number of seconds") from None
            if value <= 0:
                raise SettingsError(f"{var}={raw!r} must be > 0")
            return value
    return DEFAULT_HUB_TIMEOUT
