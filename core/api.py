"""High-level entry points shared by the CLI, the demo and plugins."""

from __future__ import annotations

from pathlib import Path

import torch

from idinvert.core.device import resolve_device
from idinvert.core.modeldir import ModelBundle, load_model_dir


def load_model(
    ref: str | Path | None = None, device: str | torch.device | None = "auto"
) -> ModelBundle:
    """Load a model by reference (built-in name, directory, or Hub ``owner/name[@rev]``).

    Args:
        ref: the model reference; ``None`` = the bundled default model.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:i]"``, ``"mps"`` or a ``torch.device``.

    Returns:
        A frozen, eval-mode :class:`ModelBundle` on the device.
    """
    from idinvert.hub.resolve import resolve_model

    return load_model_dir(resolve_model(ref), resolve_device(device))
