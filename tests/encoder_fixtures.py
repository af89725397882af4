"""Tiny GAN / encoder runs and model directories for the encoder, boundary and eval tests.

Everything is 16 px with widths of at most 16 channels so a training step takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from idinvert.training import gan
from idinvert.training.encoder_train import EncoderTrainConfig, train_encoder

FACES = "idinvert.training.faces:iter_faces"


def tiny_gan_config(**overrides: object) -> gan.GanTrainConfig:
    base = dict(
        resolution=16,
        z_dim=16,
        w_dim=16,
        mapping_layers=2,
        mapping_hidden_dim=16,
        fmaps_base=128,
        fmaps_max=16,
        batch_size=4,
        total_kimg=0.004,
        num_workers=0,
        threads=1,
        progress=False,
        data=FACES,
    )
    base.update(overrides)
    return gan.GanTrainConfig(**base)


def make_gan_run(run_dir: Path, seed: int = 0) -> Path:
    """A GAN run directory with a freshly initialised (untrained) checkpoint, written the way
    ``train_gan`` writes it (``_checkpoint_payload`` + atomic ``save_checkpoint``)."""
    cfg = tiny_gan_config(seed=seed)
    G, G_ema, D = gan.build_networks(cfg)
    with torch.no_grad():  # a little variety in the noise/style paths of the random generator
        for name, p in G_ema.named_parameters():
            if name.endswith("apply_noise.weight"):
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed))
    opt_G, opt_D = gan.make_optimizers(cfg, G, D)
    state = gan.TrainState(G, G_ema, D, opt_G, opt_D, step=1, nimg=4)
    payload = gan._checkpoint_payload(state, cfg, torch.get_rng_state()[None].clone())  # noqa: SLF001
    run_dir.mkdir(parents=True, exist_ok=True)
    gan.save_checkpoint(run_dir / gan.CHECKPOINT_FILE, payload)
    return run_dir


def tiny_encoder_config(gan_run: Path, **overrides: object) -> EncoderTrainConfig:
    base = dict(
        gan_run=str(gan_run),
        channels_base=4,
        channels_max=16,
        batch_size=4,
        total_kimg=0.008,
        threads=1,
        num_workers=0,
        log_every=1,
        sample_every=2,
        grid_size=2,
        progress=False,
        perceptual="none",
        checkpoint_minutes=1000.0,
    )
    base.update(overrides)
    return EncoderTrainConfig(**base)


def make_encoder_run(gan_run: Path, run_dir: Path, **overrides: object) -> Path:
    """Two encoder steps against ``gan_run`` (no VGG)."""
    train_encoder(tiny_encoder_config(gan_run, **overrides), run_dir, resume=False)
    return run_dir
