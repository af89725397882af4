"""A small multi-label CNN that predicts the binary face attributes from pixels.

It plays the role of InterFaceGAN's attribute predictors: it labels generated images to fit
the boundaries, and ``idinvert eval`` uses it to score reconstructions and edits. It is trained
on *real* renders (training stream ``data_seed``) and its accuracy is reported on the
validation split (see :mod:`idinvert.training.splits`).

Architecture (``[B, 3, R, R]`` in [−1, 1] → logits ``[B, A]``): conv3×3 stem (16 channels),
then stride-2 conv3×3 + conv3×3 blocks (channels doubled up to 128) down to 4×4, every conv
followed by BatchNorm and LeakyReLU(0.2) (without normalisation it learned several times
slower), flatten, dense 128, dense A — 0.85 M parameters at 64 px (1.6 MiB fp16), ≈ 200
images/s of training on one CPU thread; inference uses the BN running statistics. Flattening
(instead of global pooling) keeps where things are, which ``yaw_right`` needs.

Augmentation: random translations (±R/16 px, reflect padding) and, with probability
``blur_prob``, a ×½ box down-sample and bilinear up-sample, so the classifier also judges the
softer images a small GAN produces. No mirror flips (they would flip ``yaw_right``).

Files inside a model directory: ``classifier.safetensors`` (fp16 state dict) and
``classifier.json`` (``{"format": "idinvert-attribute-classifier", "version": 1, "config":
{...}, "metrics": {"accuracy": {attr: acc}, ...}, "data": {...}, "training": {...}}``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

CLASSIFIER_FILE = "classifier.safetensors"
CLASSIFIER_JSON = "classifier.json"
CLASSIFIER_FORMAT = "idinvert-attribute-classifier"
CLASSIFIER_VERSION = 1


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of an :class:`AttributeClassifier`.

    Attributes:
        resolution: input side R (power of two ≥ 8).
        attributes: attribute names, in logit order.
        channels: stem width (doubled per block).
        channels_max: width cap.
        hidden: width of the dense layer before the output.
    """

    resolution: int
    attributes: tuple[str, ...]
    channels: int = 16
    channels_max: int = 128
    hidden: int = 128

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {r}")
        if not self.attributes:
            raise ValueError("attributes must not be empty")
        object.__setattr__(self, "attributes", tuple(self.attributes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attributes"] = list(self.attributes)
        return d


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """conv3×3 (no bias) → BatchNorm → LeakyReLU(0.2)."""
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2),
    ]


class AttributeClassifier(nn.Module):
    """Image ``[B, 3, R, R]`` in [−1, 1] → attribute logits ``[B, A]`` (positive ⇒ label 1)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        layers: list[nn.Module] = _conv_bn(3, c, 1)
        res = config.resolution
        while res > 4:
            c_out = min(c * 2, config.channels_max)
            layers += _conv_bn(c, c_out, 2) + _conv_bn(c_out, c_out, 1)
            c, res = c_out, res // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * 16, config.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden, len(config.attributes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, R, R]`` in [−1, 1] → logits ``[B, A]``."""
        r = self.config.resolution
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, r, r):
            raise ValueError(f"classifier input must be [B, 3, {r}, {r}], got {list(x.shape)}")
        return self.head(self.features(x))


@torch.no_grad()
def predict_logits(
    net: AttributeClassifier, images: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """Logits ``[N, A]`` (CPU float32) of ``images [N, 3, R, R]`` in [−1, 1], eval mode."""
    net.eval()
    device = next(net.parameters()).device
    if images.shape[0] == 0:
        return torch.zeros(0, len(net.config.attributes))
    return torch.cat([net(x.to(device)).float().cpu() for x in images.split(batch_size)])


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class ClassifierTrainConfig:
    """Training settings.

    Attributes:
        num_train: training renders (faces ``0..num_train-1`` of stream ``data_seed``).
        num_val: validation renders (faces ``0..num_val-1`` of the validation split).
        epochs: passes over the training set.
        batch_size, lr: Adam (β 0.9/0.999); the lr follows a cosine decay to 5 %.
        blur_prob: probability of the down/up-sampling augmentation.
        shift: maximum translation in pixels (``None`` = R // 16).
        seed: initialisation and batch order.
        channels, channels_max, hidden: architecture (see :class:`ClassifierConfig`).
    """

    num_train: int = 20000
    num_val: int = 2000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    blur_prob: float = 0.3
    shift: int | None = None
    seed: int = 0
    channels: int = 16
    channels_max: int = 128
    hidden: int = 128


def augment(x: torch.Tensor, shift: int, blur_prob: float, gen: torch.Generator) -> torch.Tensor:
    """Random translation (reflect padding, one offset per batch) and per-sample blur."""
    if shift > 0:
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
        r = x.shape[-1]
        padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        x = padded[:, :, shift + dy : shift + dy + r, shift + dx : shift + dx + r]
    if blur_prob > 0:
        soft = F.interpolate(
            F.avg_pool2d(x, 2), scale_factor=2.0, mode="bilinear", align_corners=False
        )
        pick = (torch.rand(x.shape[0], generator=gen) < blur_prob).view(-1, 1, 1, 1)
        x = torch.where(pick, soft, x)
    return x


def accuracy_per_attribute(
    logits: torch.Tensor, labels: torch.Tensor, names: tuple[str, ...]
) -> dict[str, float]:
    """Fraction of ``(logits > 0) == labels`` per attribute (``[N, A]`` each)."""
    correct = ((logits > 0).to(labels.dtype) == labels).float().mean(0)
    return {name: round(float(correct[i]), 4) for i, name in enumerate(names)}


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    names: tuple[str, ...],
    cfg: ClassifierTrainConfig,
    val_images: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[AttributeClassifier, dict[str, Any]]:
    """Train a classifier with BCE-with-logits on ``images [N, 3, R, R]`` in [−1, 1] and
    ``labels [N, A]`` in {0, 1}.

    Returns:
        ``(net in eval mode, metrics)``; ``metrics`` holds ``accuracy`` (held-out, per
        attribute, if validation data is given), ``train_accuracy``, ``mean_accuracy``,
        ``positive_rate`` (held-out label frequency), ``loss`` and ``seconds``.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    ccfg = ClassifierConfig(images.shape[-1], names, cfg.channels, cfg.channels_max, cfg.hidden)
    net = AttributeClassifier(ccfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    n = images.shape[0]
    steps_per_epoch = max(math.ceil(n / cfg.batch_size), 1)
    total = steps_per_epoch * cfg.epochs
    shift = images.shape[-1] // 16 if cfg.shift is None else cfg.shift
    labels_f = labels.float()
    step, loss_sum, loss_n = 0, 0.0, 0
    bar = tqdm(total=total, desc="classifier", unit="step", disable=not progress)
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n, cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size]
            x = augment(images[idx], shift, cfg.blur_prob, gen)
            loss = F.binary_cross_entropy_with_logits(net(x), labels_f[idx])
            lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", refresh=False)
    bar.close()
    net.eval()
    metrics: dict[str, Any] = {
        "loss": round(loss_sum / max(loss_n, 1), 5),
        "train_accuracy": accuracy_per_attribute(predict_logits(net, images), labels, names),
    }
    if val_images is not None and val_labels is not None:
        acc = accuracy_per_attribute(predict_logits(net, val_images), val_labels, names)
        metrics["accuracy"] = acc
        metrics["mean_accuracy"] = round(float(np.mean(list(acc.values()))), 4)
        rate = val_labels.float().mean(0)
        metrics["positive_rate"] = {a: round(float(rate[i]), 4) for i, a in enumerate(names)}
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    return net, metrics


# ---------------------------------------------------------------------------------------------
# Files


def save_classifier(
    net: AttributeClassifier, model_dir: str | Path, info: dict[str, Any] | None = None
) -> Path:
    """Write ``classifier.safetensors`` (fp16) and ``classifier.json`` into ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().half() for k, v in net.state_dict().items()}
    tmp = model_dir / f".{CLASSIFIER_FILE}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(model_dir / CLASSIFIER_FILE)
    meta = {
        "format": CLASSIFIER_FORMAT,
        "version": CLASSIFIER_VERSION,
        "config": net.config.to_dict(),
        **(info or {}),
    }
    (model_dir / CLASSIFIER_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return model_dir / CLASSIFIER_FILE


def read_classifier_info(model_dir: str | Path) -> dict[str, Any]:
    """The parsed ``classifier.json`` of a model directory."""
    path = Path(model_dir) / CLASSIFIER_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir}: no attribute classifier ({CLASSIFIER_JSON}); train one with "
            "`idinvert train boundary --model DIR --all`"
        )
    info = json.loads(path.read_text())
    if info.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path}: not an idinvert attribute classifier")
    if int(info.get("version", 0)) > CLASSIFIER_VERSION:
        raise ValueError(f"{path}: version {info['version']} is newer than supported")
    return info


def load_classifier(
    model_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[AttributeClassifier, dict[str, Any]]:
    """Load the classifier of a model directory: ``(net frozen in eval mode, classifier.json)``."""
    info = read_classifier_info(model_dir)
    cfg = dict(info["config"])
    net = AttributeClassifier(ClassifierConfig(**{**cfg, "attributes": tuple(cfg["attributes"])}))
    state = load_file(str(Path(model_dir) / CLASSIFIER_FILE))
    net.load_state_dict({k: v.float() for k, v in state.items()})
    net.eval().requires_grad_(False)
    return net.to(device), info
