"""Exception types with messages meant for end users (CLI prints them as one line)."""

from __future__ import annotations


class IdinvertError(Exception):
    """Base class of every error idinvert reports to users without a traceback."""


class ModelFormatError(IdinvertError, ValueError):
    """A checkpoint or model directory does not have the expected keys, shapes or files."""


class ModelNotFoundError(IdinvertError, LookupError):
    """A model reference (built-in name, directory or Hub repo id) cannot be resolved."""


class InputImageError(IdinvertError, ValueError):
    """An input image file cannot be used (unreadable, not an image, too large, ...)."""


class CodeFormatError(IdinvertError, ValueError):
    """A latent-code array has the wrong shape, dtype or model."""
