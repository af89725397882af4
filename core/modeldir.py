"""The idinvert model directory: ``config.json`` + safetensors weights (+ boundaries, card).

Layout::

    config.json               architecture, image conventions, defaults, provenance
    generator.safetensors     Generator state dict
    encoder.safetensors       Encoder state dict
    perceptual.safetensors    optional PerceptualNet state dict
    boundaries/<name>.safetensors   optional, one per attribute (see core.boundaries)
    classifier.safetensors/.json    optional attribute classifier (evaluation of our models)
    README.md                 model card

A model may declare torchvision's VGG16 as its perceptual network without shipping it; the
weights then come from a *resolver* passed to :func:`load_model_dir` (the core knows no weight
sources; :func:`idinvert.hub.api.load_model` passes the Hub's, see
:mod:`idinvert.hub.vgg_weights`).

Only safetensors and JSON are ever read: loading a model directory cannot execute code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from idinvert.core.errors import ModelFormatError
from idinvert.core.models import assign_state, build_without_init
from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.perceptual import PerceptualConfig, PerceptualNet

logger = logging.getLogger(__name__)

FORMAT_NAME = "idinvert-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
ENCODER_FILE = "encoder.safetensors"
PERCEPTUAL_FILE = "perceptual.safetensors"
BOUNDARY_DIR = "boundaries"
CARD_FILE = "README.md"
#: Optional files carried along when a loaded model is saved again (evaluation companions).
EXTRA_FILES = ("classifier.safetensors", "classifier.json", "boundary_report.json", "eval.json")


@dataclass
class ImageConfig:
    """How images are presented to the networks.

    Attributes:
        resolution: side length R of the square network input/output.
        value_range: pixel values inside the networks (``[-1, 1]``).
        channel_order: ``"RGB"``.
        resize: resampling used to bring inputs to R×R (``"bilinear"``, as cv2.INTER_LINEAR
            in the official preprocessing).
        alignment: ``"ffhq"`` for face models that expect FFHQ-aligned crops, else ``None``.
    """

    resolution: int
    value_range: tuple[float, float] = (-1.0, 1.0)
    channel_order: str = "RGB"
    resize: str = "bilinear"
    alignment: str | None = None


@dataclass
class ModelConfig:
    """Everything in ``config.json``."""

    name: str
    generator: GeneratorConfig
    encoder: EncoderConfig
    perceptual: PerceptualConfig | None
    image: ImageConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "generator": self.generator.to_dict(),
            "encoder": self.encoder.to_dict(),
            "perceptual": self.perceptual.to_dict() if self.perceptual else None,
            "image": {
                "resolution": self.image.resolution,
                "value_range": list(self.image.value_range),
                "channel_order": self.image.channel_order,
                "resize": self.image.resize,
                "alignment": self.image.alignment,
            },
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "config.json") -> ModelConfig:
        if data.get("format") != FORMAT_NAME:
            raise ModelFormatError(
                f"{source}: not an idinvert model config (format={data.get('format')!r})"
            )
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelFormatError(
                f"{source}: format_version {data['format_version']} is newer than this idinvert "
                f"supports ({FORMAT_VERSION}); upgrade idinvert"
            )
        try:
            image = dict(data["image"])
            image["value_range"] = tuple(image.get("value_range", (-1.0, 1.0)))
            return cls(
                name=str(data.get("name", "")),
                description=str(data.get("description", "")),
                generator=GeneratorConfig(**data["generator"]),
                encoder=EncoderConfig(**data["encoder"]),
                perceptual=PerceptualConfig(**data["perceptual"])
                if data.get("perceptual")
                else None,
                image=ImageConfig(**image),
                provenance=dict(data.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: invalid model config ({exc})") from None


@dataclass
class ModelBundle:
    """A loaded model: the three networks plus configuration and where it came from.

    Attributes:
        config: the parsed ``config.json``.
        generator: :class:`Generator` in eval mode, parameters frozen.
        encoder: :class:`Encoder` in eval mode, parameters frozen.
        perceptual: :class:`PerceptualNet` or ``None`` when the model ships none.
        path: the model directory (``None`` for in-memory models).
        perceptual_missing: why a declared perceptual network could not be loaded, if so.
    """

    config: ModelConfig
    generator: Generator
    encoder: Encoder
    perceptual: PerceptualNet | None = None
    path: Path | None = None
    perceptual_missing: str | None = None
    _lowered: dict[torch.dtype, ModelBundle] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def resolution(self) -> int:
        return self.config.generator.resolution

    @property
    def num_layers(self) -> int:
        return self.config.generator.num_layers

    @property
    def w_dim(self) -> int:
        return self.config.generator.w_dim

    @property
    def code_shape(self) -> tuple[int, int]:
        """``(L, D)`` of one W+ code."""
        return (self.num_layers, self.w_dim)

    def to(self, device: torch.device | str) -> ModelBundle:
        """Move all networks to ``device`` (in place) and return self."""
        for net in self.networks():
            net.to(device)
        self._lowered.clear()
        return self

    def lowered(self, dtype: torch.dtype) -> ModelBundle:
        """The same model with its networks copied to ``dtype`` (e.g. ``torch.bfloat16``).

        Copies are made once per dtype and kept (cleared by :meth:`to`); the bundle itself is
        unchanged. A bundle already in ``dtype`` returns itself.
        """
        from idinvert.core.precision import lowered_copy

        if next(self.generator.parameters()).dtype == dtype:
            return self
        if dtype not in self._lowered:
            perceptual = None if self.perceptual is None else lowered_copy(self.perceptual, dtype)
            self._lowered[dtype] = ModelBundle(
                self.config,
                lowered_copy(self.generator, dtype),
                lowered_copy(self.encoder, dtype),
                perceptual,
                self.path,
                self.perceptual_missing,
            )
        return self._lowered[dtype]

    def networks(self) -> list[nn.Module]:
        return [n for n in (self.generator, self.encoder, self.perceptual) if n is not None]

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter (inference / inversion)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _state_to_save(net: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v
    return out


def save_model_dir(
    bundle_or_parts: ModelBundle,
    out_dir: str | Path,
    *,
    dtype: torch.dtype | None = None,
    card: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model directory atomically (into a temp dir beside ``out_dir``, then rename).

    Args:
        bundle_or_parts: the model to save.
        out_dir: destination directory; must not exist unless ``overwrite``.
        dtype: store floating tensors in this dtype (e.g. ``torch.float16``); ``None`` keeps.
        card: text of ``README.md`` (model card); ``None`` writes none.
        overwrite: replace an existing directory.

    Returns:
        The directory path.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    b = bundle_or_parts
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(b.config.to_json(), indent=2) + "\n")
        save_file(
            _state_to_save(b.generator, dtype), str(tmp / GENERATOR_FILE), metadata={"format": "pt"}
        )
        save_file(
            _state_to_save(b.encoder, dtype), str(tmp / ENCODER_FILE), metadata={"format": "pt"}
        )
        # torchvision's VGG16 may be declared without shipping it (resolved at load time);
        # the official caffe VGG16 is always written.
        external_vgg = (
            b.config.perceptual is not None
            and b.config.perceptual.preprocessing == "torchvision"
            and b.path is not None
            and not (Path(b.path) / PERCEPTUAL_FILE).is_file()
        )
        if b.perceptual is not None and not external_vgg:
            save_file(
                _state_to_save(b.perceptual, dtype),
                str(tmp / PERCEPTUAL_FILE),
                metadata={"format": "pt"},
            )
        if b.path is not None:
            source = Path(b.path)
            if (source / BOUNDARY_DIR).is_dir():
                shutil.copytree(source / BOUNDARY_DIR, tmp / BOUNDARY_DIR)
            for extra in EXTRA_FILES:
                if (source / extra).is_file():
                    shutil.copy2(source / extra, tmp / extra)
        if card is not None:
            (tmp / CARD_FILE).write_text(card)
        _make_world_readable(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _make_world_readable(folder: Path) -> None:
    """mkdtemp/safetensors create private files; a model directory is meant to be shared."""
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def load_weights_into(net: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``net`` (tensors taken as float32, ``assign=True``).

    Raises:
        ModelFormatError: the file is missing or unreadable, or its names/shapes differ from
            ``net``'s state dict (missing, unexpected and mismatched keys are listed).
    """
    if not path.is_file():
        raise ModelFormatError(f"{path.parent}: missing {path.name}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(
            f"{path}: unreadable safetensors file ({exc}); re-download or re-convert it"
        ) from None
    expected = net.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {list(state[k].shape)} vs config {list(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:8]}" if missing else "",
                f"unexpected {unexpected[:8]}" if unexpected else "",
                f"wrong shapes {wrong[:6]}" if wrong else "",
            )
            if s
        )
        raise ModelFormatError(f"{path}: weights do not match config.json ({detail})")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    assign_state(net, state)


PerceptualResolver = Callable[[PerceptualConfig], "tuple[PerceptualNet | None, str | None]"]
"""``config → (net, None)`` or ``(None, why it is unavailable)``: supplies the weights of a
perceptual network that a model directory declares without shipping (torchvision's VGG16)."""


def read_model_config(model_dir: str | Path) -> ModelConfig:
    """Parse ``config.json`` of a model directory."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise ModelFormatError(f"{model_dir}: not an idinvert model directory (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return ModelConfig.from_json(data, str(path))


def load_model_dir(
    model_dir: str | Path,
    device: torch.device | str = "cpu",
    *,
    perceptual_resolver: PerceptualResolver | None = None,
) -> ModelBundle:
    """Load a model directory into frozen, eval-mode networks on ``device``.

    Args:
        model_dir: the directory.
        device: where the networks go.
        perceptual_resolver: supplies a declared-but-not-shipped perceptual network
            (torchvision's VGG16). Without one such a model loads with ``perceptual=None`` and
            :attr:`ModelBundle.perceptual_missing` says why.
    """
    model_dir = Path(model_dir)
    config = read_model_config(model_dir)
    generator = build_without_init(lambda: Generator(config.generator))
    load_weights_into(generator, model_dir / GENERATOR_FILE)
    encoder = build_without_init(lambda: Encoder(config.encoder))
    load_weights_into(encoder, model_dir / ENCODER_FILE)
    perceptual = None
    missing_reason = None
    if config.perceptual is not None:
        if (
            model_dir / PERCEPTUAL_FILE
        ).is_file() or config.perceptual.preprocessing != "torchvision":
            perceptual = build_without_init(lambda: PerceptualNet(config.perceptual))
            load_weights_into(perceptual, model_dir / PERCEPTUAL_FILE)
        elif perceptual_resolver is not None:
            perceptual, missing_reason = perceptual_resolver(config.perceptual)
        else:
            missing_reason = (
                "the model declares torchvision's VGG16 without shipping it and no weight "
                "resolver was given (load it with idinvert.hub.api.load_model)"
            )
    bundle = ModelBundle(config, generator, encoder, perceptual, model_dir, missing_reason)
    for net in bundle.networks():
        freeze(net)
    return bundle.to(device)
