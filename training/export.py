"""Assemble a model directory from a GAN run and an encoder run (the bundled model).

Contents (``core.modeldir`` layout plus training extras)::

    config.json            generator + encoder config; perceptual = torchvision VGG16 *config
                           only* (weights resolved at load time, see below); provenance
    generator.safetensors  EMA generator (fp16) — the exact G the encoder was trained against
    encoder.safetensors    encoder (fp16, BatchNorm running statistics included)
    classifier.safetensors + classifier.json   attribute classifier (if available)
    boundaries/<attr>.safetensors + boundary_report.json   (if available)
    eval.json              ``idinvert eval`` result (if given)
    samples.png            sample grid: ψ 0.7 (2 rows, z seed 3), ψ 1 (1 row), held-out renders
    README.md              model card

The torchvision VGG16 (10 convs to conv4_3, ≈ 7.6 M parameters, ≈ 15 MB fp16 / 30 MB fp32) is
*not* stored: with ``perceptual="external"`` config.json records ``{"preprocessing":
"torchvision", "output_scale": 57.63, "source": ...}`` and the loader resolves the weights
through :func:`idinvert.hub.vgg_weights.vgg16_perceptual_net`. ``perceptual="none"`` records no
perceptual network (inversion then runs with ``--perceptual-weight 0``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from idinvert.core.modeldir import (
    ENCODER_FILE,
    GENERATOR_FILE,
    ImageConfig,
    ModelBundle,
    ModelConfig,
    save_model_dir,
)
from idinvert.core.models.perceptual import TORCHVISION_OUTPUT_SCALE, PerceptualConfig
from idinvert.training import gan
from idinvert.training.boundary_train import BOUNDARY_DIR, REPORT_FILE
from idinvert.training.classifier import CLASSIFIER_FILE, CLASSIFIER_JSON
from idinvert.training.encoder_train import export_encoder

EVAL_FILE = "eval.json"
GRID_FILE = "samples.png"
GEN_BEGIN = "<!-- generator-quality -->"
GEN_END = "<!-- /generator-quality -->"
EXTRAS = (CLASSIFIER_FILE, CLASSIFIER_JSON, REPORT_FILE, EVAL_FILE, BOUNDARY_DIR)
#: Extras measured on one generator (and encoder): carried only to a model with the same weights.
WEIGHT_BOUND_EXTRAS = (REPORT_FILE, EVAL_FILE, BOUNDARY_DIR)
WEIGHT_BUDGET_MIB = 25.0
VGG_SOURCE = (
    "torchvision ImageNet VGG16 (vgg16-397923af.pth, as used by LPIPS) to ReLU(conv4_3); "
    "not stored here: resolved at load time by idinvert.hub.vgg_weights"
)


def external_perceptual_config() -> PerceptualConfig:
    """The perceptual entry of a model that does not ship its VGG weights."""
    return PerceptualConfig("torchvision", TORCHVISION_OUTPUT_SCALE, VGG_SOURCE)


def _last_log(run_dir: Path | None, step: int | None = None) -> dict[str, Any]:
    """The run's last ``log.jsonl`` line, or with ``step`` the last one logged at or before it
    (a GAN run keeps training after the step an encoder was trained against)."""
    if run_dir is None or not (run_dir / "log.jsonl").is_file():
        return {}
    rows = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()]
    if step is not None:
        rows = [r for r in rows if r.get("step", 0) <= step]
    return rows[-1] if rows else {}


def _generator_matches(run_dir: Path, G: torch.nn.Module) -> bool | None:
    """Whether the GAN run's current EMA generator equals ``G`` (``None``: no checkpoint)."""
    path = run_dir / gan.CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = gan.load_checkpoint(path)["G_ema"]
    own = G.state_dict()
    return state.keys() == own.keys() and all(torch.equal(state[k], own[k]) for k in own)


def _same_weights(model_dir: Path, G: torch.nn.Module, E: torch.nn.Module) -> bool:
    """Whether ``model_dir``'s generator and encoder files hold ``G`` and ``E`` (as fp16)."""
    from safetensors.torch import load_file

    for file, net in ((GENERATOR_FILE, G), (ENCODER_FILE, E)):
        path = model_dir / file
        if not path.is_file():
            return False
        stored = load_file(str(path))
        own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        for k, v in own.items():
            if k not in stored:
                return False
            mine = v.half() if v.is_floating_point() else v
            if stored[k].shape != mine.shape or not torch.equal(
                stored[k], mine.to(stored[k].dtype)
            ):
                return False
    return True


def weight_mib(model_dir: str | Path) -> dict[str, float]:
    """Size in MiB of every ``*.safetensors`` file under ``model_dir`` (relative names)."""
    root = Path(model_dir)
    return {
        str(p.relative_to(root)): round(p.stat().st_size / 2**20, 3)
        for p in sorted(root.rglob("*.safetensors"))
    }


def build_model_dir(
    encoder_run: str | Path,
    out: str | Path,
    *,
    gan_run: str | Path | None = None,
    name: str = "faces64",
    perceptual: str = "external",
    extras_from: str | Path | None = None,
    eval_json: str | Path | None = None,
    overwrite: bool = False,
    description: str | None = None,
    notes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write the model directory ``out`` (atomically: staged beside it, then swapped in).

    Args:
        encoder_run: encoder run directory; its checkpoint also holds the generator it was
            trained against, which is the one exported.
        out: destination model directory.
        gan_run: the GAN run (for provenance and the card; default: the path the encoder run
            recorded). A warning is returned if its current EMA generator differs.
        name: model name in config.json.
        perceptual: ``"external"`` (record the torchvision VGG config, no weights) or
            ``"none"``.
        extras_from: a directory whose classifier, boundaries, boundary report and eval.json are
            copied in (default: ``out`` itself when it exists, so re-exporting keeps them).
            Boundaries, report and eval.json describe one generator/encoder: they are copied
            only when the directory holds the same weights (else a warning says so); the
            classifier (trained on renders) always.
        eval_json: an ``idinvert eval`` result to store as eval.json and quote in the card.
        overwrite: replace an existing ``out``.
        description: config.json description.
        notes: free-text recipe notes listed under "Training notes" in the card (e.g. a
            learning-rate change on resume, which the run's stored config cannot show).

    Returns:
        ``{"path", "weights_mib" (per file), "total_mib", "warnings"}``.
    """
    out = Path(out)
    if perceptual not in ("external", "none"):
        raise ValueError(f"perceptual must be external or none, got {perceptual!r}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite (--overwrite)")
    E, G, info = export_encoder(encoder_run)
    gan_info = info["gan"]
    gan_dir = Path(gan_run) if gan_run else Path(gan_info.get("run", ""))
    gan_dir = gan_dir if gan_dir.is_dir() else None
    warnings = []
    if gan_dir is not None and _generator_matches(gan_dir, G) is False:
        warnings.append(
            f"{gan_dir}: the GAN run's current G_ema differs from the generator the encoder was "
            f"trained against (GAN step {gan_info.get('step')}); exporting the latter"
        )
    extras_dir = Path(extras_from) if extras_from else (out if out.is_dir() else None)
    same = extras_dir is not None and extras_dir.is_dir() and _same_weights(extras_dir, G, E)
    stale = [
        item
        for item in WEIGHT_BOUND_EXTRAS
        if not same and extras_dir is not None and (extras_dir / item).exists()
    ]
    if stale:
        warnings.append(
            f"{extras_dir}: not carried over ({', '.join(stale)}): measured on other generator/"
            "encoder weights; run `idinvert train boundary` and `idinvert eval` on the new model"
        )
    eval_result = json.loads(Path(eval_json).read_text()) if eval_json else None
    if eval_result is None and same and (extras_dir / EVAL_FILE).is_file():
        eval_result = json.loads((extras_dir / EVAL_FILE).read_text())

    enc_cfg = info["config"]
    gan_cfg = gan_info.get("config", {})
    gan_seconds = _last_log(gan_dir, gan_info.get("step")).get("time_sec")
    provenance = {
        "dataset": "idinvert-synthetic-faces",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": {
            "trainer": "idinvert train gan (StyleGAN, per-layer W+ mapping), EMA weights",
            "run": str(gan_info.get("run", "")),
            "step": gan_info.get("step"),
            "kimg": gan_info.get("kimg"),
            "train_seconds": gan_seconds,
            "device": gan_cfg.get("device", "cpu"),
            **_continued_from(gan_cfg.get("init_generator"), gan_info.get("kimg"), gan_seconds),
        },
        "encoder": {
            "trainer": "idinvert train encoder (domain-guided encoder, IDInvert objective)",
            "run": str(Path(encoder_run).resolve()),
            "step": info["step"],
            "kimg": round(info["nimg"] / 1000, 3),
            "train_seconds": round(float(info["elapsed_sec"]), 1),
            "device": enc_cfg.get("device", "cpu"),
            "perceptual_term": enc_cfg.get("perceptual"),
        },
        "data": {
            "renderer": enc_cfg.get("data") or gan_cfg.get("data"),
            "train_seed": gan_cfg.get("seed"),
            "synthetic": True,
        },
        "perceptual": "external torchvision VGG16 (not stored)"
        if perceptual == "external"
        else None,
    }
    config = ModelConfig(
        name=name,
        generator=G.config,
        encoder=E.config,
        perceptual=external_perceptual_config() if perceptual == "external" else None,
        image=ImageConfig(G.config.resolution),
        provenance=provenance,
        description=description
        or (
            f"idinvert's own {G.config.resolution} px model of procedurally rendered cartoon "
            "faces (trained from scratch on CPU): generator, domain-guided encoder, attribute "
            "boundaries"
        ),
    )
    bundle = ModelBundle(config, G, E, None, None)
    card_ctx = {
        "gan_cfg": gan_cfg,
        "enc_cfg": enc_cfg,
        "info": info,
        "gan_dir": gan_dir,
        "eval": eval_result,
        "extras": extras_dir,
        "perceptual": perceptual,
        "notes": [n.strip() for n in notes if n.strip()],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    stage_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.export.", dir=out.parent))
    try:
        stage = save_model_dir(bundle, stage_root / "model", dtype=torch.float16, card="")
        _copy_extras(extras_dir, stage, eval_result, skip=stale)
        write_sample_grid(G, stage / GRID_FILE)
        sizes = weight_mib(stage)
        (stage / "README.md").write_text(model_card(config, card_ctx, stage, sizes))
        _swap_in(stage, out)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    total = round(sum(sizes.values()), 3)
    if total > WEIGHT_BUDGET_MIB:
        warnings.append(f"weights total {total} MiB > the {WEIGHT_BUDGET_MIB:g} MiB budget")
    return {"path": out, "weights_mib": sizes, "total_mib": total, "warnings": warnings}


def _copy_extras(
    src: Path | None, dst: Path, eval_result: dict[str, Any] | None, skip: list[str]
) -> None:
    if src is not None and src.is_dir():
        for item in EXTRAS:
            if item in skip:
                continue
            p = src / item
            if p.is_dir():
                shutil.copytree(p, dst / item)
            elif p.is_file():
                shutil.copy2(p, dst / item)
    if eval_result is not None:
        (dst / EVAL_FILE).write_text(json.dumps(eval_result, indent=2) + "\n")
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def _swap_in(stage: Path, out: Path) -> None:
    """Replace ``out`` by ``stage`` with renames (the old directory is removed last)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Model card


def _hours(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds / 3600:.1f} h"


def _continued_from(
    init_generator: str | None, kimg: float | None, seconds: float | None = None
) -> dict[str, Any]:
    """Provenance of a generator run that started from a model directory's generator:
    ``{"continued_from": {"model", "kimg", "train_seconds", "device"}, "total_kimg",
    "total_train_seconds"}`` read from that directory's ``config.json`` (its totals when it was
    itself continued, else its own figures; the seconds total only when both are known);
    ``{}`` for a run from scratch or a start that is no longer readable (then only this run's
    kimg are known, and the card says so)."""
    if not init_generator:
        return {}
    try:
        start = json.loads((Path(init_generator) / "config.json").read_text())
        before = start["provenance"]["generator"]
        start_kimg = float(before.get("total_kimg", before["kimg"]))
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    start_seconds = before.get("total_train_seconds", before.get("train_seconds"))
    chain: dict[str, Any] = {
        "continued_from": {
            "model": start.get("name", Path(init_generator).name),
            "path": str(init_generator),
            "kimg": round(start_kimg, 3),
            "train_seconds": start_seconds,
            "device": before.get("device", "cpu"),
        },
        "total_kimg": round(start_kimg + float(kimg or 0.0), 3),
    }
    if start_seconds is not None and seconds is not None:
        chain["total_train_seconds"] = round(float(start_seconds) + float(seconds), 1)
    return chain


def _generator_kimg_text(gen: dict[str, Any]) -> str:
    """``"N kimg"``, or for a continued generator ``"N kimg in all (M in this run, …)"``."""
    before = gen.get("continued_from")
    if not before:
        return f"{gen.get('kimg')} kimg"
    return (
        f"{gen.get('total_kimg')} kimg in all ({gen.get('kimg')} kimg in this run, on "
        f"{gen.get('device', 'cpu')}, after {before['kimg']} kimg of `{before['model']}`'s "
        "generator)"
    )


def _compute_text(prov: dict[str, Any], steps: int) -> str:
    """The card's compute line: hours per stage and where they ran."""
    gen, enc = prov["generator"], prov["encoder"]
    devices = {gen.get("device", "cpu"), enc.get("device", "cpu")}
    where = "CPU only" if devices == {"cpu"} else "Devices: " + ", ".join(sorted(devices))
    before = gen.get("continued_from")
    earlier = (
        f" (this run; {_hours(before.get('train_seconds'))} on {before.get('device', 'cpu')} "
        f"before, for `{before['model']}`)"
        if before
        else ""
    )
    return (
        f"{where}. GAN: {_hours(gen.get('train_seconds'))} on {gen.get('device', 'cpu')}"
        f"{earlier}; encoder: {_hours(enc.get('train_seconds'))} on {enc.get('device', 'cpu')} "
        f"({steps} steps)."
    )


def _metrics_section(ev: dict[str, Any] | None) -> list[str]:
    if not ev:
        return [
            "Not evaluated yet: run `idinvert eval --model DIR --json eval.json` and "
            "re-export with `--eval eval.json`."
        ]
    from idinvert.training.evaluate import METHODS, format_table

    if "reconstruction" not in ev:  # a generator-only eval
        return generator_card_lines(ev.get("generator")) or ["Not evaluated yet."]

    c = ev["config"]
    lines = [
        f"`idinvert eval` on {c['n']} held-out renders (data seed {c['data_seed']}, never used "
        f"in training), {c['steps']} optimisation steps:",
        "",
        "| method | MSE | LPIPS | attributes preserved | edit success | edit preservation |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        r, s = ev["reconstruction"][m], ev["editing_summary"][m]
        lpips = "n/a" if r.get("lpips") is None else f"{r['lpips']:.3f}"
        succ = "n/a" if s.get("success") is None else f"{s['success']:.2f}"
        pres = "n/a" if s.get("preserved") is None else f"{s['preserved']:.2f}"
        lines.append(
            f"| {m} | {r['mse']:.4f} | {lpips} | {r['attribute_preservation']:.3f} "
            f"| {succ} | {pres} |"
        )
    lines += ["", "```", format_table(ev), "```"]
    gen = generator_card_lines(ev.get("generator"))
    return [*lines, "", *gen] if gen else lines


@torch.no_grad()
def write_sample_grid(
    G: torch.nn.Module, path: Path, seed: int = 3, cols: int = 8, data: str | None = None
) -> Path:
    """Write ``path`` (PNG, ``4·R × cols·R``): two rows of ψ = 0.7 samples (z seed ``seed``),
    one row of ψ = 1 samples, one row of held-out renders (eval seed 0, faces ``0..cols−1``)."""
    from idinvert.training.splits import DEFAULT_DATA, eval_seed, render_faces, to_float_images

    G = G.float().eval()
    z = torch.randn(3 * cols, G.config.z_dim, generator=torch.Generator().manual_seed(seed))
    rows = [
        gan.render_samples(G, z[: 2 * cols], psi=0.7),
        gan.render_samples(G, z[2 * cols :], psi=1.0),
    ]
    raw, _, _ = render_faces(data or DEFAULT_DATA, eval_seed(0), 0, cols, G.config.resolution)
    rows.append(to_float_images(raw))
    gan.save_image(gan.images_to_grid(torch.cat(rows), cols), path)
    path.chmod(0o644)
    return path


def generator_card_lines(gen: dict[str, Any] | None, grid: bool = True) -> list[str]:
    """Markdown of the eval's generator section (between :data:`GEN_BEGIN`/:data:`GEN_END`)."""
    if not gen or gen.get("kid") is None:
        return []
    f = gen["features"]
    lines = [
        GEN_BEGIN,
        "### Generator quality",
        "",
        f"KID **{gen['kid']:.5f}** ± {gen['kid_std']:.5f} (std over {gen['kid_subsets']} subsets "
        f"of {gen['kid_subset_size']}), FID **{gen['fid']:.2f}**: {gen['n_samples']} samples "
        f"(ψ = {gen['psi']:g}, z seed {gen['sample_seed']}) vs {gen['n_renders']} held-out "
        f"renders (data seed {gen['render_seed']}). Features: {f['network']}, {f['layer']}, "
        f"{f['pooling']}, inputs {f['image_size']} px ({f['normalisation']}); KID kernel "
        f"{f['kid_kernel']}. Not comparable to Inception-based figures; recompute with "
        "`idinvert eval --generator-only --gen-n 5000`.",
        "",
    ]
    labels = gen.get("labels")
    if labels:
        lines += [
            "Attribute classifier's positive rate on samples vs renders:",
            "",
            "| attribute | samples | renders | renders (true labels) | gap |",
            "|---|---|---|---|---|",
            *[
                f"| {a} | {r['samples']:.3f} | {r['renders']:.3f} | {r['renders_true']:.3f} "
                f"| {r['gap']:.3f} |"
                for a, r in labels["attributes"].items()
            ],
            f"| mean gap | | | | {labels['mean_gap']:.3f} |",
            "",
        ]
    if grid:
        lines += [
            f"![samples]({GRID_FILE}) — rows 1–2: ψ 0.7 (z seed 3), row 3: ψ 1, row 4: held-out "
            "renders.",
            "",
        ]
    return [*lines, GEN_END]


def add_generator_section(model_dir: str | Path, gen: dict[str, Any]) -> Path:
    """Store ``gen`` (an eval generator section) under ``"generator"`` in ``eval.json``, write
    the sample grid and put the section into ``README.md`` (replacing an earlier one, else
    before ``## Files``). For a model whose card was written before the section existed."""
    from idinvert.core.modeldir import load_model_dir

    model_dir = Path(model_dir)
    ev_path = model_dir / EVAL_FILE
    ev = json.loads(ev_path.read_text()) if ev_path.is_file() else {}
    ev["generator"] = gen
    ev_path.write_text(json.dumps(ev, indent=2) + "\n")
    write_sample_grid(load_model_dir(model_dir).generator, model_dir / GRID_FILE)
    card_path = model_dir / "README.md"
    card = card_path.read_text() if card_path.is_file() else ""
    block = "\n".join(generator_card_lines(gen))
    if GEN_BEGIN in card and GEN_END in card:
        head, rest = card.split(GEN_BEGIN, 1)
        card = head + block + rest.split(GEN_END, 1)[1]
    elif "\n## Files" in card:
        head, rest = card.split("\n## Files", 1)
        card = head.rstrip("\n") + "\n\n" + block + "\n\n## Files" + rest
    else:
        card = card.rstrip("\n") + "\n\n" + block + "\n"
    card_path.write_text(card)
    return card_path


def _teacher_text(gan_cfg: dict[str, Any]) -> str:
    """The card's sentence on the renderer-teacher term and the starting weights, if any."""
    parts = []
    if gan_cfg.get("init_generator"):
        parts.append(
            f" Started from the generator of `{Path(gan_cfg['init_generator']).name}` with a "
            f"fresh discriminator (D alone for the first {gan_cfg.get('d_warmup_kimg', 0):g} "
            "kimg)."
        )
    if gan_cfg.get("teacher_weight"):
        parts.append(
            " **Renderer as teacher**: z also drives the face renderer's random parameters, and "
            f"a reconstruction term (weight {gan_cfg['teacher_weight']:g}: L1 + "
            f"{gan_cfg.get('teacher_perceptual', 0):g} × shallow VGG16 features) pulls G(z) "
            "towards the render of the same z, next to the adversarial loss; mapping lr × "
            f"{gan_cfg.get('mapping_lr_scale', 1):g}."
        )
    return "".join(parts)


def _decorrelation_text(attrs: dict[str, Any]) -> str:
    """The card's sentence on background/shirt colour decorrelation (boundary_report.json)."""
    rows = {a: v["colour_decorrelation"] for a, v in attrs.items() if "colour_decorrelation" in v}
    if not rows:
        return ""

    def shift(entry: dict[str, Any]) -> str:
        c = entry["colour_shift"]
        return f"{c['background']['mean_abs']:.1f}/{c['shirt']['mean_abs']:.1f}"

    return (
        " Background and shirt colour directions (mean colour Jacobian of the pixels that are "
        "background or shirt in ≥ 90 % of renders) are projected out of every normal; mean "
        "colour shift of an edit, background/shirt in 8-bit levels, raw → decorrelated: "
        + ", ".join(f"{a} {shift(r['raw'])} → {shift(r['decorrelated'])}" for a, r in rows.items())
        + " (`boundary_report.json`)."
    )


def _notes_section(notes: list[str]) -> list[str]:
    """The card's "Training notes" lines (none without notes)."""
    if not notes:
        return []
    return ["## Training notes", "", *[f"* {n}" for n in notes], ""]


def model_card(
    config: ModelConfig, ctx: dict[str, Any], model_dir: Path, sizes: dict[str, float]
) -> str:
    """Markdown model card (data, recipe, compute, metrics, limitations)."""
    g, e = config.generator, config.encoder
    gan_cfg, enc_cfg, info = ctx["gan_cfg"], ctx["enc_cfg"], ctx["info"]
    prov = config.provenance
    clf = (
        json.loads((model_dir / CLASSIFIER_JSON).read_text())
        if (model_dir / CLASSIFIER_JSON).is_file()
        else None
    )
    report = (
        json.loads((model_dir / REPORT_FILE).read_text())
        if (model_dir / REPORT_FILE).is_file()
        else None
    )
    lines = [
        f"# {config.name}: idinvert's bundled synthetic-face model",
        "",
        config.description,
        "",
        "## Intended use",
        "",
        "Offline demo and tests of In-Domain GAN Inversion (Zhu et al., ECCV 2020): invert an "
        f"aligned {g.resolution}×{g.resolution} cartoon face into W+ "
        f"(`[{g.num_layers}, {g.w_dim}]`), edit it along attribute boundaries, render it. It "
        "knows only the procedural face domain; real photos are out of domain.",
        "",
        "## Data",
        "",
        f"Procedurally rendered, labelled cartoon faces (`{prov['data']['renderer']}`, training "
        f"stream seed {prov['data']['train_seed']}); no real people, no downloaded data. "
        "Evaluation and validation use reserved data seeds (≥ 2^29) that no training command "
        "accepts.",
        "",
        "## Networks and recipe",
        "",
        f"* **Generator** (`generator.safetensors`): StyleGAN with per-layer W+ mapping, "
        f"{g.resolution} px, z/w dim {g.z_dim}/{g.w_dim}, channels "
        f"min({g.fmaps_base}/r, {g.fmaps_max}); trained with `idinvert train gan` "
        f"(non-saturating logistic loss, R1 γ {gan_cfg.get('r1_gamma')}, batch "
        f"{gan_cfg.get('batch_size')}, lr {gan_cfg.get('lr')}, style mixing "
        f"{gan_cfg.get('style_mixing_prob')}) for {_generator_kimg_text(prov['generator'])}; EMA "
        f"weights. Truncation ψ {g.truncation_psi} on the first {g.truncation_layers} layers "
        "for sampling only." + _teacher_text(gan_cfg),
        f"* **Encoder** (`encoder.safetensors`): the official PyTorch-port architecture with "
        f"BatchNorm (channels {e.channels_base}→{e.channels_max}, trainable BN γ), trained with "
        f"the paper's objective: pixel MSE + {enc_cfg.get('perceptual_weight')}·VGG "
        f"(term {'on' if enc_cfg.get('perceptual') == 'torchvision' else 'OFF: no VGG weights'})"
        f" + {enc_cfg.get('adversarial_weight')}·adversarial, D kept training (logistic + R1 "
        f"γ {enc_cfg.get('r1_gamma'):.3g}), Adam β ({enc_cfg.get('beta1')}, "
        f"{enc_cfg.get('beta2')}), lr {enc_cfg.get('lr'):.3g}·0.8^(kimg/"
        f"{enc_cfg.get('decay_kimg'):g}), batch {enc_cfg.get('batch_size')}, mirror "
        f"augmentation, {round(info['nimg'] / 1000, 1)} kimg of real renders"
        + (
            f", warm-started from the encoder of `{Path(enc_cfg['init_encoder']).name}` "
            "(output BatchNorm re-matched to this generator's codes)"
            if enc_cfg.get("init_encoder")
            else ""
        )
        + (
            f", latent warm-up weight {enc_cfg.get('latent_weight')}"
            if enc_cfg.get("latent_weight")
            else ""
        )
        + ".",
        "* **Perceptual network**: "
        + (
            "torchvision's ImageNet VGG16 to ReLU(conv4_3) with output scale "
            f"{TORCHVISION_OUTPUT_SCALE:.2f}; *not stored here* (≈ 15 MB fp16) — idinvert "
            "resolves it at load time (`idinvert.hub.vgg_weights`)."
            if ctx["perceptual"] == "external"
            else "none (invert with `--perceptual-weight 0`)."
        ),
    ]
    if clf:
        acc = clf.get("metrics", {}).get("accuracy", {})
        lines.append(
            "* **Attribute classifier** (`classifier.safetensors`): small CNN trained on "
            f"{clf['training']['num_train']} labelled renders; held-out accuracy "
            + ", ".join(f"{a} {v:.2f}" for a, v in acc.items())
            + "."
        )
    if report:
        attrs = report.get("attributes", {})
        lines.append(
            "* **Boundaries** (`boundaries/`): InterFaceGAN-style per-layer unit normals from "
            f"{report['config']['num_samples']} W+ samples (ψ = 1), top/bottom "
            f"{report['config']['ratio']:g} by classifier logit, logistic regression; default "
            "layers chosen by measured edit success × preservation: "
            + ", ".join(
                f"{a} {v['layers']} (distance {v['distance']:.2f})" for a, v in attrs.items()
            )
            + "."
            + _decorrelation_text(attrs)
        )
    lines += [
        "",
        "## Compute",
        "",
        _compute_text(prov, info["step"]),
        "",
        *_notes_section(ctx.get("notes", [])),
        "## Metrics",
        "",
        *_metrics_section(ctx["eval"]),
        "",
        "## Files",
        "",
        *[f"* `{k}`: {v:.2f} MiB" for k, v in sizes.items()],
        "",
        "## Limitations",
        "",
        "Tiny, blurry compared with FFHQ models; only the rendered cartoon-face domain; "
        "attribute edits are judged by a classifier trained on the same renderer.",
        "",
        "License: MIT (weights trained from scratch on synthetic data).",
        "",
    ]
    return "\n".join(lines)
