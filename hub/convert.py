"""Official IDInvert checkpoints (``.pth`` state dicts) → idinvert model directory.

The architecture is inferred from the tensor shapes, the state dicts are checked key by key
against our modules (missing / unexpected keys and wrong shapes are reported together), and the
result is written as ``config.json`` + safetensors. Checkpoints are read with
``torch.load(..., weights_only=True)``: no code from the file is ever executed.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from idinvert.core.boundaries import Boundary
from idinvert.core.errors import ModelFormatError
from idinvert.core.models import assign_state, build_without_init
from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.perceptual import CONV_INDICES, PerceptualConfig, PerceptualNet

StateDict = dict[str, torch.Tensor]


def load_official_checkpoint(path: str | Path) -> StateDict:
    """Read an official ``.pth`` state dict safely (``weights_only=True``).

    Raises:
        ModelFormatError: the file is missing, not a torch file, refuses safe loading, or
            does not hold a flat ``{name: tensor}`` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ModelFormatError(f"{path}: {_describe_refusal(exc)}") from None
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelFormatError(f"{path}: expected a flat {{name: tensor}} state dict")
    return dict(state)


_ACCEPTED = (
    "Accepted: an official IDInvert .pth file, i.e. a flat {name: tensor} state dict saved with "
    "torch.save (it loads with weights_only=True; nothing in it is executed)."
)


def _describe_refusal(exc: Exception) -> str:
    """What was wrong with a checkpoint torch refused, in our words (never torch's advice to
    turn the safe loader off)."""
    text = str(exc)
    found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
    if found:
        return (
            "refused: the file is a pickle that would build Python objects other than tensors "
            f"(it references {found.group(1)}), which could run code when loaded. " + _ACCEPTED
        )
    if isinstance(exc, (KeyError, EOFError)) or any(
        m in text.lower() for m in ("zip archive", "invalid load key", "magic number", "operand")
    ):
        return "not a PyTorch checkpoint (unreadable as torch.save output; truncated or a " + (
            "different format?). " + _ACCEPTED
        )
    if "Weights only load failed" in text:
        return (
            "refused: the file holds something other than plain tensors, which the safe "
            "loader does not rebuild. " + _ACCEPTED
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"could not be read as a PyTorch state dict ({first}). " + _ACCEPTED


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _shape(state: StateDict, key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise ModelFormatError(f"{what}: required key '{key}' is missing; is this the right file?")
    return tuple(state[key].shape)


def infer_generator_config(state: StateDict, **overrides: object) -> GeneratorConfig:
    """Derive a :class:`GeneratorConfig` from official generator tensor shapes.

    Resolution from the last ``synthesis.output{k}`` index (``R = 4 · 2^k``), ``z_dim`` from
    ``mapping.dense0``, ``w_dim`` from ``w_avg``, mapping depth from the dense count, channel
    widths from the conv shapes (``fmaps_max`` = width at 4 px, ``fmaps_base`` the smallest
    base reproducing every width), ``fused_scale`` from the keys: an official fused
    up-convolution block holds its kernel as ``synthesis.layer{i}.weight`` in TF layout
    ``[3, 3, C_in, C_out]`` (no ``conv`` submodule), a plain one as
    ``synthesis.layer{i}.conv.weight`` ``[C_out, C_in, 3, 3]``.
    """
    what = "generator checkpoint"
    outputs = [
        int(m.group(1))
        for k in state
        if (m := re.fullmatch(r"synthesis\.output(\d+)\.conv\.weight", k))
    ]
    if not outputs:
        raise ModelFormatError(
            f"{what}: no 'synthesis.output*.conv.weight' key; not a StyleGAN generator"
        )
    resolution = 4 * 2 ** max(outputs)
    num_layers = 2 * (int(math.log2(resolution)) - 1)
    z_dim = _shape(state, "mapping.dense0.fc.weight", what)[1]
    (w_dim,) = _shape(state, "truncation.w_avg", what)
    mapping_layers = sum(1 for k in state if re.fullmatch(r"mapping\.dense\d+\.fc\.weight", k))
    last = _shape(state, f"mapping.dense{mapping_layers - 1}.fc.weight", what)
    if last[0] != num_layers * w_dim:
        raise ModelFormatError(
            f"{what}: mapping output is {last[0]} wide, expected L*D = {num_layers}*{w_dim} "
            "(per-layer W+ mapping); only IDInvert 'repeat_w=False' generators are supported"
        )
    hidden = _shape(state, "mapping.dense0.fc.weight", what)[0] if mapping_layers > 1 else None
    widths: dict[int, int] = {4: _shape(state, "synthesis.layer0.const", what)[1]}
    fused: dict[int, bool] = {}
    for i in range(2, num_layers, 2):
        res = 2 ** (i // 2 + 2)
        fused_key, plain_key = f"synthesis.layer{i}.weight", f"synthesis.layer{i}.conv.weight"
        if fused_key in state and plain_key in state:
            raise ModelFormatError(
                f"{what}: both '{fused_key}' (fused up-convolution) and '{plain_key}' are present"
            )
        fused[res] = fused_key in state
        shape = _shape(state, fused_key if fused[res] else plain_key, what)
        if len(shape) != 4 or (fused[res] and shape[:2] != (3, 3)):
            layout = "[3, 3, in, out]" if fused[res] else "[out, in, 3, 3]"
            raise ModelFormatError(
                f"{what}: '{fused_key if fused[res] else plain_key}' has shape {list(shape)}, "
                f"expected {layout}"
            )
        widths[res] = shape[3] if fused[res] else shape[0]
    fmaps_max = widths[4]
    fmaps_base = next(
        (
            b
            for b in sorted({w * r for r, w in widths.items()})
            if all(min(b // r, fmaps_max) == w for r, w in widths.items())
        ),
        None,
    )
    if fmaps_base is None:
        raise ModelFormatError(
            f"{what}: channel widths {widths} follow no min(base // res, max) rule"
        )
    if all(f == (r >= 128) for r, f in fused.items()):
        fused_scale: object = "auto"
    elif all(fused.values()):
        fused_scale = True
    elif not any(fused.values()):
        fused_scale = False
    else:
        raise ModelFormatError(f"{what}: unsupported mix of fused up-convolutions {fused}")
    if "synthesis.lod" in state and float(state["synthesis.lod"]) != 0.0:
        raise ModelFormatError(
            f"{what}: synthesis.lod = {float(state['synthesis.lod'])}; only lod 0 is supported"
        )
    kwargs: dict[str, object] = dict(
        resolution=resolution,
        z_dim=z_dim,
        w_dim=w_dim,
        mapping_layers=mapping_layers,
        mapping_hidden_dim=hidden,
        fmaps_base=fmaps_base,
        fmaps_max=fmaps_max,
        fused_scale=fused_scale,
    )
    kwargs.update(overrides)
    return GeneratorConfig(**kwargs)  # type: ignore[arg-type]


def infer_encoder_config(state: StateDict, num_layers: int | None = None) -> EncoderConfig:
    """Derive an :class:`EncoderConfig` from official encoder tensor shapes."""
    what = "encoder checkpoint"
    blocks = [int(m.group(1)) for k in state if (m := re.fullmatch(r"block(\d+)\..*", k))]
    if not blocks:
        raise ModelFormatError(f"{what}: no 'block*' keys; not an IDInvert encoder")
    n = max(blocks) + 1
    resolution = 2**n
    base = _shape(state, "block0.conv.weight", what)[0]
    image_channels = _shape(state, "block0.conv.weight", what)[1]
    widths = [base] + [_shape(state, f"block{i}.conv2.weight", what)[0] for i in range(1, n - 1)]
    fc_out = _shape(state, f"block{n - 1}.fc.weight", what)[0]
    cap = max(widths)
    for i, w in enumerate(widths):
        if w != min(base * 2**i, cap):
            raise ModelFormatError(
                f"{what}: block widths {widths} do not double from {base} up to a cap"
            )
    layers = num_layers if num_layers is not None else 2 * (n - 1)
    if fc_out % layers:
        raise ModelFormatError(f"{what}: output width {fc_out} is not a multiple of L = {layers}")
    return EncoderConfig(
        resolution=resolution,
        w_dim=fc_out // layers,
        num_layers=layers if num_layers is not None else None,
        channels_base=base,
        channels_max=cap,
        image_channels=image_channels,
    )


def _check_keys(
    module: torch.nn.Module, state: StateDict, what: str, optional: re.Pattern[str] | None = None
) -> StateDict:
    """Return the subset of ``state`` that ``module`` expects; raise listing every mismatch.

    Keys of the module matching ``optional`` may be absent from ``state``.
    """
    expected = module.state_dict()
    required = {k for k in expected if optional is None or not optional.fullmatch(k)}
    missing = sorted(required - set(state))
    shape_errors = [
        f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or shape_errors:
        parts = []
        if missing:
            parts.append(
                f"missing keys: {', '.join(missing[:12])}" + (" ..." if len(missing) > 12 else "")
            )
        if shape_errors:
            parts.append("wrong shapes: " + "; ".join(shape_errors[:8]))
        raise ModelFormatError(f"{what}: " + " | ".join(parts))
    return {k: state[k] for k in expected if k in state}


def _as_float32(state: StateDict) -> StateDict:
    """Floating tensors as contiguous float32 (integer counters unchanged)."""
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


_GENERATOR_DROPPABLE = re.compile(
    r"synthesis\.output\d+\.(conv\.weight|bias)|synthesis\.lod|synthesis\.layer\d+\.blur\.kernel|"
    r"truncation\.truncation"
)
_ENCODER_BATCH_COUNTERS = re.compile(r".*num_batches_tracked")


def convert_generator(
    state: StateDict, config: GeneratorConfig | None = None
) -> tuple[Generator, GeneratorConfig]:
    """Load an official generator state dict into a :class:`Generator`.

    Dead progressive-growing ToRGBs, ``lod``, blur kernels and truncation coefficients are
    dropped (they are fixed or unused); any other unexpected key is an error.
    """
    config = config or infer_generator_config(state)
    net = build_without_init(lambda: Generator(config))
    clean = _check_keys(net, state, "generator checkpoint")
    unexpected = sorted(k for k in set(state) - set(clean) if not _GENERATOR_DROPPABLE.fullmatch(k))
    if unexpected:
        raise ModelFormatError(
            f"generator checkpoint: unexpected keys: {', '.join(unexpected[:12])}"
        )
    assign_state(net, _as_float32(clean))
    return net.eval(), config


def convert_encoder(state: StateDict, num_layers: int) -> tuple[Encoder, EncoderConfig]:
    """Load an official encoder state dict into an :class:`Encoder` with ``num_layers`` codes."""
    config = infer_encoder_config(state, num_layers)
    net = build_without_init(lambda: Encoder(config))
    clean = _check_keys(net, state, "encoder checkpoint", optional=_ENCODER_BATCH_COUNTERS)
    unexpected = sorted(set(state) - set(net.state_dict()))
    if unexpected:
        raise ModelFormatError(f"encoder checkpoint: unexpected keys: {', '.join(unexpected[:12])}")
    assign_state(net, _as_float32(clean))
    return net.eval(), config


def convert_perceptual(state: StateDict, config: PerceptualConfig | None = None) -> PerceptualNet:
    """Load the official Keras-converted ``vgg16.pth`` (``layer{i}.weight/bias``) up to conv4_3."""
    net = PerceptualNet(
        config or PerceptualConfig(preprocessing="caffe", source="official vgg16.pth")
    )
    clean = _check_keys(net, state, "perceptual (vgg16) checkpoint")
    allowed = {f"layer{i}.{p}" for i in (24, 26, 28) for p in ("weight", "bias")}
    unexpected = sorted(set(state) - set(clean) - allowed)
    if unexpected:
        raise ModelFormatError(
            f"perceptual (vgg16) checkpoint: unexpected keys: {', '.join(unexpected[:12])}"
        )
    net.load_state_dict(clean, strict=True)
    assert len(clean) == 2 * len(CONV_INDICES)
    return net.eval()


def read_boundaries(folder: str | Path, num_layers: int, w_dim: int) -> list[tuple[Path, Boundary]]:
    """Read every boundary in ``folder`` (official ``.npy`` or our ``.safetensors``) for a model
    with ``[num_layers, w_dim]`` codes; directions come back as ``[num_layers, w_dim]``.

    Official ``.npy`` files are pickles: they are read with a restricted unpickler that can only
    rebuild numpy arrays (see :func:`idinvert.core.boundaries.read_npy_restricted`).

    Raises:
        ModelFormatError: no boundary file, an unreadable/refused file, or a boundary whose shape
            or default layers do not fit the model (the message names the file).
    """
    from idinvert.core.boundaries import load_boundary

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".safetensors"))
    if not files:
        raise ModelFormatError(f"{folder}: no boundary files (*.npy, *.safetensors) found")
    out = []
    for f in files:
        b = load_boundary(f)
        rows, dim = b.direction.shape
        if dim != w_dim or rows not in (1, num_layers):
            raise ModelFormatError(
                f"{f}: boundary is [{rows}, {dim}] but the model's W+ codes are "
                f"[{num_layers}, {w_dim}]; boundaries must come from the same model"
            )
        b.direction = b.layerwise(num_layers)
        if not b.layers:
            b.layers = list(range(num_layers))
        if max(b.layers) >= num_layers:
            raise ModelFormatError(
                f"{f}: default layers {b.layers} exceed the model's L = {num_layers}"
            )
        out.append((f, b))
    return out


def convert_checkpoints(
    generator_path: str | Path,
    encoder_path: str | Path,
    out_dir: str | Path,
    *,
    perceptual_path: str | Path | None = None,
    boundaries_dir: str | Path | None = None,
    name: str | None = None,
    alignment: str | None = None,
    truncation_psi: float = 0.7,
    truncation_layers: int = 8,
    overwrite: bool = False,
) -> Path:
    """Convert official checkpoints into an idinvert model directory (see :mod:`core.modeldir`).

    Args:
        generator_path: ``styleganinv_<domain>_generator.pth``.
        encoder_path: ``styleganinv_<domain>_encoder.pth``.
        out_dir: destination model directory (must not exist unless ``overwrite``).
        perceptual_path: the official Keras-converted ``vgg16.pth`` (optional).
        boundaries_dir: folder of official boundary ``.npy`` files (optional).
        name: model name for config.json (default: the output folder name).
        alignment: ``"ffhq"`` for face models, ``None`` otherwise (default: guessed from the
            file name: ``ffhq``/``face`` → ``"ffhq"``).
        truncation_psi, truncation_layers: the official truncation settings.
        overwrite: replace an existing output directory.

    Returns:
        The written directory.
    """
    from idinvert.core.boundaries import save_boundary
    from idinvert.core.modeldir import (
        BOUNDARY_DIR,
        ImageConfig,
        ModelBundle,
        ModelConfig,
        save_model_dir,
    )

    out_dir = Path(out_dir)
    g_state = load_official_checkpoint(generator_path)
    e_state = load_official_checkpoint(encoder_path)
    g_config = infer_generator_config(
        g_state, truncation_psi=truncation_psi, truncation_layers=truncation_layers
    )
    generator, g_config = convert_generator(g_state, g_config)
    encoder, e_config = convert_encoder(e_state, g_config.num_layers)
    if e_config.resolution != g_config.resolution or e_config.w_dim != g_config.w_dim:
        raise ModelFormatError(
            f"encoder ({e_config.resolution} px, w dim {e_config.w_dim}) does not match the "
            f"generator ({g_config.resolution} px, w dim {g_config.w_dim})"
        )
    perceptual = None
    sources = {
        "generator": {"file": Path(generator_path).name, "sha256": sha256_of_file(generator_path)},
        "encoder": {"file": Path(encoder_path).name, "sha256": sha256_of_file(encoder_path)},
    }
    if perceptual_path is not None:
        perceptual = convert_perceptual(load_official_checkpoint(perceptual_path))
        sources["perceptual"] = {
            "file": Path(perceptual_path).name,
            "sha256": sha256_of_file(perceptual_path),
        }
    boundaries = []
    if boundaries_dir is not None:
        boundaries = read_boundaries(boundaries_dir, g_config.num_layers, g_config.w_dim)
        sources["boundaries"] = {
            b.name: {"file": f.name, "sha256": sha256_of_file(f)} for f, b in boundaries
        }
    stem = Path(generator_path).name.lower()
    if alignment is None and ("ffhq" in stem or "face" in stem):
        alignment = "ffhq"
    config = ModelConfig(
        name=name or out_dir.name,
        description="Converted from the official IDInvert (genforce/idinvert_pytorch) checkpoints.",
        generator=g_config,
        encoder=e_config,
        perceptual=perceptual.config if perceptual is not None else None,
        image=ImageConfig(resolution=g_config.resolution, alignment=alignment),
        provenance={
            "converted_from": sources,
            "paper": "arXiv:2004.00049",
            "tool": "idinvert convert",
        },
    )
    with tempfile.TemporaryDirectory(prefix="idinvert-boundaries-") as staging:
        # save_model_dir copies <bundle.path>/boundaries into its atomic staging folder, so the
        # model directory appears complete (boundaries included) or not at all.
        if boundaries:
            folder = Path(staging) / BOUNDARY_DIR
            folder.mkdir()
            for _, b in boundaries:
                save_boundary(b, folder / f"{b.name}.safetensors")
        bundle = ModelBundle(
            config, generator, encoder, perceptual, Path(staging) if boundaries else None
        )
        return save_model_dir(bundle, out_dir, overwrite=overwrite)
