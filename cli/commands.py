"""``idinvert invert``, ``render`` and ``sample``: thin CLI wrappers around the library."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from idinvert.cli.options import DEVICE, MODEL, OUT, batch_size
from idinvert.core.codes import load_codes, save_codes
from idinvert.core.images import load_for_model, save_png, to_tensor, to_uint8
from idinvert.core.inversion import InversionSettings, StepInfo, invert, synthesize
from idinvert.core.outputs import staged_output


def unique_stems(paths: list[Path]) -> list[str]:
    """File stems, disambiguated with a counter when two inputs share a stem."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}_{n}")
    return stems


def _load_model(model_ref: str | None, device: str):
    from idinvert.hub.api import load_model

    return load_model(model_ref, device)


def _lpips_metric(device: torch.device):
    """The LPIPS metric if a real VGG backbone is available, else ``None``."""
    try:
        from idinvert.hub.lpips_weights import load_lpips
    except ImportError:
        return None
    return load_lpips(device)


def _align_inputs(paths: list[Path], resolution: int, face_index: int, found: list) -> list:
    """Load and FFHQ-align every photo before any inversion work → ``uint8 [R, R, 3]`` crops;
    appends ``(AlignedFace, faces_found)`` per photo to ``found``."""
    from tqdm.auto import tqdm

    from idinvert.core.alignment import AlignmentUnavailableError, align_image, check_available
    from idinvert.core.images import load_image

    try:
        check_available()
    except AlignmentUnavailableError as exc:
        raise AlignmentUnavailableError(f"{exc} (or pass --no-align)") from None
    for path in tqdm(paths, desc="aligning", unit="image", disable=len(paths) < 2):
        found.append(
            align_image(load_image(path), resolution, face_index=face_index, name=str(path))
        )
    return [aligned.image for aligned, _ in found]


def _write_alignment(
    stage: Path,
    stem: str,
    path: Path,
    aligned_found: tuple,
    inv_u8: np.ndarray,
    face_index: int,
    paste_back: bool,
) -> dict:
    """Write ``<stem>_aligned.png`` (+ ``<stem>_full.png``); the summary's alignment entry."""
    from idinvert.core.images import load_image

    aligned, faces_found = aligned_found
    save_png(aligned.image, stage / f"{stem}_aligned.png")
    info = {
        "aligned_png": f"{stem}_aligned.png",
        "face_index": face_index,
        "faces_found": faces_found,
        **aligned.to_dict(),
    }
    if paste_back:
        save_png(aligned.paste(inv_u8, load_image(path)), stage / f"{stem}_full.png")
        info["full_png"] = f"{stem}_full.png"
    return info


@click.command("invert")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@MODEL
@OUT
@click.option(
    "--steps",
    default=100,
    show_default=True,
    type=click.IntRange(0, 100000),
    help="Optimization steps; 0 = encoder only.",
)
@click.option(
    "--lr",
    default=0.01,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Adam learning rate.",
)
@click.option("--pixel-weight", default=1.0, show_default=True, type=click.FloatRange(min=0))
@click.option(
    "--perceptual-weight",
    default=5e-5,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Weight of the VGG feature loss (0 disables it).",
)
@click.option(
    "--domain-weight",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Weight of the encoder-consistency (in-domain) regularizer.",
)
@batch_size(4, "Images optimized together.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="fp32 reproduces the official numbers; bf16 runs the networks in bfloat16 "
    "(faster on CPUs with AMX/AVX-512 BF16 and recent GPUs, same objective within ~1%).",
)
@click.option(
    "--compile",
    "compile_step",
    is_flag=True,
    help="Compile the optimization step with torch.compile (CUDA graphs on a GPU): faster "
    "steps after a one-off compilation of tens of seconds; pays off for many steps or images.",
)
@DEVICE
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--align/--no-align",
    default=None,
    help="FFHQ-style face alignment of the photos first (needs idinvert[align]). "
    "Default: on for models whose config says alignment 'ffhq', else off.",
)
@click.option(
    "--face-index",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="With --align: which face when a photo has several (0 = largest, by decreasing size).",
)
@click.option(
    "--paste-back",
    is_flag=True,
    help="With --align: blend the inversion back into the photo, written as <stem>_full.png.",
)
def invert_command(
    images: tuple[Path, ...],
    model_ref: str | None,
    out_dir: Path,
    steps: int,
    lr: float,
    pixel_weight: float,
    perceptual_weight: float,
    domain_weight: float,
    batch_size: int,
    precision: str,
    compile_step: bool,
    device: str,
    seed: int,
    align: bool | None,
    face_index: int,
    paste_back: bool,
) -> None:
    """Invert IMAGES into W+ codes (domain-guided encoder + in-domain optimization).

    Writes OUT/codes.npy (float32 [N, L, D], inputs in the given order), OUT/<stem>_enc.png
    (encoder reconstruction), OUT/<stem>_inv.png (final reconstruction) and OUT/summary.json.
    With --align also OUT/<stem>_aligned.png (the face crop that was inverted) and, with
    --paste-back, OUT/<stem>_full.png (the inversion blended into the photo, original size).
    """
    from tqdm.auto import tqdm

    paths = list(images)
    bundle = _load_model(model_ref, device)
    r = bundle.resolution
    if align is None:
        align = bundle.config.image.alignment == "ffhq"
    if not align and (paste_back or face_index):
        raise click.UsageError("--paste-back and --face-index need --align")
    aligned_faces: list = []  # per image (AlignedFace, faces found) when aligning
    if align:
        arrays = _align_inputs(paths, r, face_index, aligned_faces)
    else:
        arrays = [load_for_model(p, r) for p in paths]  # validates every file before any work
    settings = InversionSettings(
        steps, lr, pixel_weight, perceptual_weight, domain_weight, precision=precision
    )
    if steps > 0 and perceptual_weight > 0 and bundle.perceptual is None:
        if bundle.perceptual_missing:
            raise click.ClickException(
                "the model's perceptual network (VGG16) is unavailable: "
                f"{bundle.perceptual_missing}; "
                "or pass --perceptual-weight 0"
            )
        raise click.ClickException(
            "this model has no perceptual network; pass --perceptual-weight 0 or convert it "
            "with --perceptual vgg16.pth"
        )
    targets = to_tensor(arrays)
    bar = tqdm(total=steps * len(paths), desc="inverting", unit="step", disable=steps == 0)

    def on_step(info: StepInfo) -> None:
        bar.update(len(info.losses["total"]))
        bar.set_postfix(loss=f"{float(np.mean(info.losses['total'])):.4f}")

    result = invert(
        bundle,
        targets,
        settings,
        batch_size=batch_size,
        callback=on_step,
        seed=seed,
        compile_step=compile_step,
    )
    bar.close()
    enc_images = synthesize(bundle, result.init_codes)
    inv_images = enc_images if steps == 0 else synthesize(bundle, result.codes)
    lpips_metric = _lpips_metric(bundle.device)  # built only now, after the inversion
    lpips_inv = lpips_enc = None
    if lpips_metric is not None:
        if steps == 0:
            lpips_enc = lpips_inv = lpips_metric(enc_images, targets)
        else:
            lpips_enc, lpips_inv = lpips_metric.against(targets, enc_images, inv_images)
    stems = unique_stems(paths)
    per_image = []
    with staged_output(out_dir) as stage:
        save_codes(result.codes.numpy(), stage / "codes.npy")
        enc_u8, inv_u8 = to_uint8(enc_images), to_uint8(inv_images)
        for i, (path, stem) in enumerate(zip(paths, stems, strict=True)):
            save_png(enc_u8[i], stage / f"{stem}_enc.png")
            save_png(inv_u8[i], stage / f"{stem}_inv.png")
            entry = {
                "index": i,
                "input": str(path),
                "encoder_png": f"{stem}_enc.png",
                "inversion_png": f"{stem}_inv.png",
                "mse_encoder": float((enc_images[i] - targets[i]).square().mean()),
                "mse": float((inv_images[i] - targets[i]).square().mean()),
                "final_losses": {k: float(v[-1, i]) for k, v in result.history.items()}
                if steps
                else {},
            }
            if aligned_faces:
                entry["alignment"] = _write_alignment(
                    stage, stem, path, aligned_faces[i], inv_u8[i], face_index, paste_back
                )
            if lpips_inv is not None and lpips_enc is not None:
                entry["lpips"] = float(lpips_inv[i])
                entry["lpips_encoder"] = float(lpips_enc[i])
            per_image.append(entry)
        summary = {
            "model": str(bundle.path) if bundle.path else model_ref,
            "settings": settings.__dict__,
            "device": str(bundle.device),
            "batch_size": batch_size,
            "compiled_step": compile_step,
            "seconds": result.seconds,
            "seconds_per_image": result.seconds / len(paths),
            "lpips_available": lpips_metric is not None,
            "images": per_image,
            "loss_history": {k: v.tolist() for k, v in result.history.items()},
        }
        (stage / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(
        f"inverted {len(paths)} image(s) in {result.seconds:.1f}s: mean MSE "
        f"{np.mean([e['mse'] for e in per_image]):.4f} -> {out_dir}"
    )


@click.command("render")
@MODEL
@click.option(
    "--codes",
    "codes_path",
    required=True,
    type=click.Path(path_type=Path),
    help="codes.npy: [N, L, D] or [N, S, L, D] float32.",
)
@OUT
@DEVICE
@batch_size(8)
def render_command(
    model_ref: str | None, codes_path: Path, out_dir: Path, device: str, batch_size: int
) -> None:
    """Render W+ codes to PNGs (one per code, names sorted in code order)."""
    from tqdm.auto import tqdm

    bundle = _load_model(model_ref, device)
    codes = load_codes(codes_path, bundle.code_shape, allow_sequences=True)
    flat = codes.reshape(-1, *bundle.code_shape)
    width = max(len(str(len(flat) - 1)), 6)
    with staged_output(out_dir) as stage:
        for lo in tqdm(range(0, len(flat), batch_size), desc="rendering", unit="batch"):
            imgs = to_uint8(synthesize(bundle, torch.from_numpy(flat[lo : lo + batch_size])))
            for j, img in enumerate(imgs):
                k = lo + j
                name = f"{k:0{width}d}.png"
                if codes.ndim == 4:
                    n, s = divmod(k, codes.shape[1])
                    name = f"{n:0{width}d}_{s:03d}.png"
                save_png(img, stage / name)
    click.echo(f"rendered {len(flat)} image(s) -> {out_dir}")


@click.command("sample")
@MODEL
@click.option("--n", "num", required=True, type=click.IntRange(1, 100000), help="Number of images.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--truncation",
    default=None,
    type=click.FloatRange(0, 2),
    help="Truncation psi (default: the model's; 1 disables).",
)
@OUT
@DEVICE
@batch_size(8)
def sample_command(
    model_ref: str | None,
    num: int,
    seed: int,
    truncation: float | None,
    out_dir: Path,
    device: str,
    batch_size: int,
) -> None:
    """Random images from z ~ N(0, I): writes PNGs and codes.npy (their W+ codes)."""
    from tqdm.auto import tqdm

    bundle = _load_model(model_ref, device)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num, bundle.config.generator.z_dim, generator=g)
    codes = []
    start = time.perf_counter()
    with staged_output(out_dir) as stage:
        for lo in tqdm(range(0, num, batch_size), desc="sampling", unit="batch"):
            with torch.no_grad():
                wp = bundle.generator.z_to_wp(z[lo : lo + batch_size].to(bundle.device), truncation)
            codes.append(wp.float().cpu())
            for j, img in enumerate(to_uint8(synthesize(bundle, wp))):
                save_png(img, stage / f"{lo + j:06d}.png")
        save_codes(torch.cat(codes).numpy(), stage / "codes.npy")
    click.echo(f"sampled {num} image(s) in {time.perf_counter() - start:.1f}s -> {out_dir}")
