"""The model registry: short names for the bundled model and the paper's three domains.

* ``faces64`` — the bundled default model (shipped inside the package under
  ``idinvert/hub/bundled/faces64``; works offline).
* ``ffhq256``, ``bedroom256``, ``tower256`` — the official IDInvert models of the paper
  (genforce/idinvert_pytorch). **No copy of their weights is on the Hugging Face Hub**, so these
  names resolve only after someone converted and published them and a setting points the name at
  that repo (``IDINVERT_MODEL_FFHQ256=owner/name@rev`` or ``[models]`` in the config file, see
  :mod:`idinvert.hub.settings`). Without a setting, resolving the name fails with the exact steps.

User-defined names from the ``[models]`` table (or ``IDINVERT_MODEL_<NAME>``) work the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from idinvert.hub import settings

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_MODEL = "faces64"
PAPER = "In-Domain GAN Inversion for Real Image Editing (Zhu et al., ECCV 2020)"
ARXIV = "2004.00049"
PAPER_URL = f"https://arxiv.org/abs/{ARXIV}"
OFFICIAL_REPO = "https://github.com/genforce/idinvert_pytorch"


@dataclass(frozen=True)
class RegistryEntry:
    """A named model the registry knows about.

    Attributes:
        name: registry name (``--model NAME``).
        kind: ``"bundled"`` (ships with idinvert), ``"official"`` (paper model, convert your
            own copy) or ``"user"`` (a name defined in the settings).
        title: one-line description.
        resolution: image side length (``None`` when unknown).
        num_layers, w_dim: W+ code shape ``[L, D]`` (``None`` when unknown).
        domain: image domain.
        official_files: file names of the official checkpoints (official models).
        boundaries: attribute name → default layers of the official boundaries.
        training_data: the data the model was trained on (licence caveats).
    """

    name: str
    kind: str
    title: str
    resolution: int | None = None
    num_layers: int | None = None
    w_dim: int | None = None
    domain: str = ""
    official_files: tuple[str, ...] = ()
    boundaries: dict[str, list[int]] = field(default_factory=dict)
    training_data: str = ""

    def steps(self) -> list[str]:
        """How to make this name resolvable (official models)."""
        if self.kind != "official":
            return []
        gen, enc = self.official_files[:2]
        env = settings.model_env_var(self.name)
        return [
            f"download {gen}, {enc} and vgg16.pth from the links in {OFFICIAL_REPO} "
            "(README, 'Pre-trained models'), and the boundaries from its "
            f"boundaries/stylegan_{self.name}/ folder",
            f"idinvert convert --generator {gen} --encoder {enc} --perceptual vgg16.pth "
            f"--boundaries boundaries/stylegan_{self.name} --out {self.name}",
            f"idinvert hub publish {self.name} --repo-id YOUR_NAME/idinvert-{self.name} "
            "(add --private if the licence of the weights does not allow redistribution)",
            f"export {env}=YOUR_NAME/idinvert-{self.name}@COMMIT (the commit printed by publish), "
            f"or add '{self.name} = \"YOUR_NAME/idinvert-{self.name}@COMMIT\"' under [models] in "
            f"{settings.config_path()}",
            f"or skip the Hub: pass --model ./{self.name} (the converted directory) directly",
        ]


def _official(name: str, domain: str, data: str, boundaries: dict[str, list[int]]) -> RegistryEntry:
    return RegistryEntry(
        name=name,
        kind="official",
        title=f"Official IDInvert StyleGAN {domain} model, 256 px (convert your own copy)",
        resolution=256,
        num_layers=14,
        w_dim=512,
        domain=domain,
        official_files=(
            f"styleganinv_{name}_generator.pth",
            f"styleganinv_{name}_encoder.pth",
            "vgg16.pth",
        ),
        boundaries=boundaries,
        training_data=data,
    )


_ALL = list(range(14))

OFFICIAL_MODELS: dict[str, RegistryEntry] = {
    e.name: e
    for e in (
        _official(
            "ffhq256",
            "faces (FFHQ-aligned)",
            "FFHQ (NVIDIA, CC BY-NC-SA 4.0 dataset licence)",
            {
                "age": list(range(6)),
                "expression": [2, 3, 4, 5],
                "eyeglasses": [0, 1, 2],
                "gender": [2, 3, 4],
                "pose": [0, 1, 2],
            },
        ),
        _official(
            "bedroom256",
            "bedrooms",
            "LSUN bedroom",
            {
                a: _ALL
                for a in (
                    "cloth",
                    "cluttered_space",
                    "indoor_lighting",
                    "scary",
                    "soothing",
                    "wood",
                )
            },
        ),
        _official(
            "tower256",
            "towers",
            "LSUN tower",
            {a: _ALL for a in ("clouds", "sunny", "vegetation")},
        ),
    )
}


def bundled_models() -> dict[str, Path]:
    """Name → directory of the models shipped inside the package (may be empty)."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / "config.json").is_file()}


def _bundled_entry(name: str, path: Path | None) -> RegistryEntry:
    title = "Bundled default model (synthetic cartoon faces, 64 px; works offline)"
    if path is None:
        return RegistryEntry(name, "bundled", title + " - not installed in this copy")
    try:
        from idinvert.core.modeldir import read_model_config

        cfg = read_model_config(path)
    except Exception as exc:  # noqa: BLE001 - listing must not fail on one broken model
        return RegistryEntry(name, "bundled", f"{title} - unreadable config ({exc})")
    return RegistryEntry(
        name,
        "bundled",
        cfg.description or title,
        resolution=cfg.generator.resolution,
        num_layers=cfg.generator.num_layers,
        w_dim=cfg.generator.w_dim,
        domain="synthetic faces" if name == DEFAULT_MODEL else "",
    )


def list_entries() -> list[RegistryEntry]:
    """Every registry entry: bundled models, the official models, user-defined names."""
    bundled = bundled_models()
    entries = [_bundled_entry(DEFAULT_MODEL, bundled.get(DEFAULT_MODEL))]
    entries += [_bundled_entry(n, p) for n, p in bundled.items() if n != DEFAULT_MODEL]
    entries += list(OFFICIAL_MODELS.values())
    known = {e.name for e in entries}
    for name in sorted(settings.configured_models()):
        if name not in known:
            entries.append(RegistryEntry(name, "user", "User-defined name (settings)"))
    return entries


def entry_status(entry: RegistryEntry) -> dict[str, Any]:
    """Where ``entry`` resolves to now: ``{"available": bool, "reference": ..., "origin": ...}``."""
    configured = settings.configured_model(entry.name) or settings.configured_models().get(
        entry.name
    )
    if configured is not None:
        return {"available": True, "reference": configured[0], "origin": configured[1]}
    if entry.kind == "bundled":
        path = bundled_models().get(entry.name)
        return {
            "available": path is not None,
            "reference": str(path) if path else None,
            "origin": "bundled with idinvert" if path else "not installed",
        }
    return {"available": False, "reference": None, "origin": "not configured"}


def entry_to_json(entry: RegistryEntry) -> dict[str, Any]:
    """JSON-ready description of an entry (``idinvert models --json``)."""
    data = asdict(entry)
    data["official_files"] = list(entry.official_files)
    data.update(entry_status(entry))
    data["setting"] = settings.model_env_var(entry.name)
    if entry.kind == "official":
        data["provenance"] = {
            "paper": PAPER,
            "arxiv": ARXIV,
            "paper_url": PAPER_URL,
            "official_repo": OFFICIAL_REPO,
            "on_hugging_face_hub": False,
        }
        data["steps"] = entry.steps()
    return data


def unconfigured_message(entry: RegistryEntry) -> str:
    """One-line explanation of how to make an official registry name resolvable."""
    steps = "; ".join(f"({i}) {s}" for i, s in enumerate(entry.steps(), 1))
    return (
        f"model {entry.name!r} ({entry.title}) is not configured: no copy of the official "
        f"weights is on the Hugging Face Hub. To use it: {steps}"
    )
