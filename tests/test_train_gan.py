"""Tests of GAN training (training/gan.py, discriminator.py, train_cli.py).

Everything runs at 16 px with tiny widths so the module stays well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from idinvert.core.modeldir import (
    ImageConfig,
    ModelBundle,
    ModelConfig,
    load_model_dir,
    save_model_dir,
)
from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator
from idinvert.training.discriminator import (
    Discriminator,
    DiscriminatorConfig,
    minibatch_stddev,
)
from idinvert.training.gan import (
    CHECKPOINT_FILE,
    LOG_FILE,
    TEACHER_DRAWS,
    FaceBatches,
    GanTrainConfig,
    build_networks,
    export_generator,
    load_checkpoint,
    r1_penalty,
    style_mix,
    train_gan,
)
from idinvert.training.train_cli import train_group

HAVE_FACES = (Path(__file__).parents[1] / "training" / "faces.py").is_file()
FACES = "idinvert.training.faces:iter_faces"
STAND_IN = "test_train_gan:stand_in_faces"


def stand_in_faces(
    seed: int, start: int = 0, count: int = 1, resolution: int = 64
) -> Iterator[tuple[np.ndarray, dict[str, int]]]:
    """Tiny deterministic stand-in for ``faces.iter_faces``: a disc on a coloured background."""
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    for index in range(start, start + count):
        rng = np.random.default_rng([seed, index])
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        cx, cy, r = 0.5 + rng.normal(0, 0.05), 0.5 + rng.normal(0, 0.05), rng.uniform(0.2, 0.35)
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None]
        img = np.where(inside, fg, bg).astype(np.uint8)
        yield img, {"big": int(r > 0.27)}


def tiny_config(**overrides: object) -> GanTrainConfig:
    """A 16 px config that trains a step in a few milliseconds."""
    base = dict(
        resolution=16,
        z_dim=16,
        w_dim=16,
        mapping_layers=2,
        mapping_hidden_dim=16,
        fmaps_base=128,
        fmaps_max=16,
        batch_size=4,
        total_kimg=0.016,
        r1_interval=2,
        num_workers=0,
        threads=1,
        log_every=1,
        sample_every=2,
        grid_size=2,
        progress=False,
        checkpoint_minutes=1000.0,
        data=FACES if HAVE_FACES else STAND_IN,
    )
    base.update(overrides)
    return GanTrainConfig(**base)


def _states_equal(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            _states_equal(x, y, atol)
        elif isinstance(x, torch.Tensor):
            assert torch.allclose(x.float(), y.float(), atol=atol, rtol=0), k
        elif isinstance(x, list):
            assert len(x) == len(y)
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                if isinstance(u, dict):
                    _states_equal(u, v, atol)
                else:
                    assert u == v, (k, i)
        else:
            assert x == y, k


# ------------------------------------------------------------------------------ networks


def test_discriminator_shapes_and_r1() -> None:
    cfg = DiscriminatorConfig(resolution=16, fmaps_base=128, fmaps_max=16)
    D = Discriminator(cfg)
    assert [cfg.channels(r) for r in (16, 8, 4)] == [8, 16, 16]
    x = torch.rand(6, 3, 16, 16) * 2 - 1  # batch 6: mbstd group 3
    logits = D(x)
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    assert logits.abs().max() < 50
    penalty, _ = r1_penalty(D, x)
    assert penalty.shape == (6,) and (penalty > 0).all()
    penalty.mean().backward()
    weights = [p for n, p in D.named_parameters() if n.endswith("weight")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    with pytest.raises(ValueError):
        D(torch.zeros(1, 3, 8, 8))


def test_minibatch_stddev_groups() -> None:
    x = torch.randn(8, 4, 4, 4)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (8, 5, 4, 4)
    # Samples n and n + 2 share a group (groups are strided by B / G = 2).
    assert torch.equal(y[0, 4], y[2, 4]) and not torch.equal(y[0, 4], y[1, 4])
    assert minibatch_stddev(torch.randn(3, 4, 4, 4), group_size=4).shape == (3, 5, 4, 4)


def test_style_mix_two_sources() -> None:
    b, n_layers, d = 64, 10, 8
    w1, w2 = torch.zeros(b, n_layers, d), torch.ones(b, n_layers, d)
    gen = torch.Generator().manual_seed(0)
    wp, cutoff = style_mix(w1, w2, 1.0, gen)
    assert wp.shape == (b, n_layers, d)
    per_layer = wp[:, :, 0]  # [B, L]: 0 = from w1, 1 = from w2
    assert ((cutoff >= 1) & (cutoff <= n_layers - 1)).all()
    for i in range(b):
        c = int(cutoff[i])
        assert (per_layer[i, :c] == 0).all() and (per_layer[i, c:] == 1).all()
    assert len(set(cutoff.tolist())) > 3  # crossover points vary
    wp0, cutoff0 = style_mix(w1, w2, 0.0, gen)
    assert torch.equal(wp0, w1) and (cutoff0 == n_layers).all()
    _, cutoff_half = style_mix(w1, w2, 0.5, gen)
    assert 0 < int((cutoff_half < n_layers).sum()) < b


def test_init_statistics() -> None:
    """A freshly initialised 64 px G (the bundled architecture) gives sane, unsaturated images."""
    cfg = GanTrainConfig()
    G, _, D = build_networks(cfg)
    for name, p in G.named_parameters():
        if name.endswith("fc.weight") and name.startswith("mapping"):
            assert 80 < p.std() < 120, name  # N(0, (1/lr_mul)^2)
        elif name.endswith("fc.weight") or name.endswith("conv.weight"):
            assert 0.8 < p.std() < 1.2, name
    with torch.no_grad():
        z = torch.randn(16, cfg.z_dim, generator=torch.Generator().manual_seed(1))
        w = G.mapping(z)
        img = G.synthesis(G.truncation(w, psi=1.0), randomize_noise=True)
        logits = D(img)
    assert 0.1 < w.std() < 10
    assert img.shape == (16, 3, 64, 64) and torch.isfinite(img).all()
    assert 0.15 < img.std() < 0.9
    assert (img.abs() > 0.99).float().mean() < 0.25
    assert img.std(dim=0).mean() > 0.05  # samples differ
    assert torch.isfinite(logits).all() and logits.abs().max() < 100


def test_face_batches_are_disjoint_and_ordered() -> None:
    kwargs = dict(data=STAND_IN, seed=3, resolution=8, per_rank_batch=2, first_image=10)
    r0, r1 = FaceBatches(**kwargs, rank=0, world=2), FaceBatches(**kwargs, rank=1, world=2)
    assert [r0.start_index(k) for k in range(3)] == [10, 14, 18]
    assert [r1.start_index(k) for k in range(3)] == [12, 16, 20]
    expected = torch.from_numpy(np.stack([im for im, _ in stand_in_faces(3, 12, 2, 8)]))
    assert torch.equal(r1.render(0), expected)


# ------------------------------------------------------------------------------ training


def test_train_runs_logs_and_checkpoints(tmp_path: Path) -> None:
    cfg = tiny_config()
    result = train_gan(cfg, tmp_path)
    assert result["step"] == 4 and result["nimg"] == 16 and not result["stopped"]
    lines = [json.loads(s) for s in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    for r in lines:
        assert math.isfinite(r["loss_D"]) and math.isfinite(r["loss_G"])
        assert r["sec_per_step"] > 0 and r["images_per_sec"] > 0
    assert lines[0]["r1"] is not None  # step 0 is an R1 step
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_FILE)  # weights_only=True
    assert ckpt["step"] == 4 and ckpt["nimg"] == 16 and ckpt["rng"].shape[0] == 1
    assert float(ckpt["G"]["truncation.w_avg"].abs().sum()) > 0  # w_avg tracked
    samples = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert samples == ["grid_000000.png", "grid_000002.png", "grid_000004.png", "reals.png"]
    assert json.loads((tmp_path / "config.json").read_text())["resolution"] == 16


def test_resume_equivalence(tmp_path: Path) -> None:
    """4 steps straight (rendering in a worker) == 2 steps + resume + 2 (in-process)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_gan(tiny_config(num_workers=1), straight)
    train_gan(tiny_config(total_kimg=0.008), split)
    assert load_checkpoint(split / CHECKPOINT_FILE)["step"] == 2
    result = train_gan(tiny_config(total_kimg=0.016), split)
    assert result["step"] == 4
    a, b = load_checkpoint(straight / CHECKPOINT_FILE), load_checkpoint(split / CHECKPOINT_FILE)
    for key in ("G", "G_ema", "D", "opt_G", "opt_D"):
        _states_equal(a[key], b[key], atol=1e-6)
    assert torch.equal(a["rng"], b["rng"])
    assert a["nimg"] == b["nimg"] == 16


def test_resume_rejects_different_architecture(tmp_path: Path) -> None:
    train_gan(tiny_config(total_kimg=0.004), tmp_path)
    with pytest.raises(ValueError, match="fmaps_max"):
        train_gan(tiny_config(fmaps_max=8), tmp_path)
    # --no-resume starts over.
    result = train_gan(tiny_config(fmaps_max=8, total_kimg=0.004), tmp_path, resume=False)
    assert result["step"] == 1


def test_run_dir_lock(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    with open(tmp_path / "train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="in use"):
            train_gan(tiny_config(), tmp_path)
    assert train_gan(tiny_config(total_kimg=0.004), tmp_path)["step"] == 1


def test_max_minutes_stops_with_checkpoint(tmp_path: Path) -> None:
    result = train_gan(tiny_config(max_minutes=0.0), tmp_path)
    assert result["stopped"] and result["step"] == 1
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 1


def test_stand_in_data_source(tmp_path: Path) -> None:
    result = train_gan(tiny_config(data=STAND_IN, total_kimg=0.008, mirror=True), tmp_path)
    assert result["step"] == 2


def test_export_roundtrip_through_model_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(total_kimg=0.008)
    train_gan(cfg, run)
    G = export_generator(run)
    assert isinstance(G, Generator) and not G.training
    ckpt = load_checkpoint(run / CHECKPOINT_FILE)
    for k, v in G.state_dict().items():
        assert torch.equal(v, ckpt["G_ema"][k]), k
    assert G.config == cfg.generator_config()

    enc_cfg = EncoderConfig(resolution=16, w_dim=cfg.w_dim, channels_base=8, channels_max=16)
    model_cfg = ModelConfig(
        name="tiny-test",
        generator=G.config,
        encoder=enc_cfg,
        perceptual=None,
        image=ImageConfig(resolution=16),
    )
    bundle = ModelBundle(model_cfg, G, Encoder(enc_cfg).eval())
    out = save_model_dir(bundle, tmp_path / "model", dtype=torch.float16)
    loaded = load_model_dir(out)
    assert loaded.config.generator == G.config
    rounded = Generator(G.config).eval()  # the exported weights as stored (fp16)
    rounded.load_state_dict({k: v.half().float() for k, v in G.state_dict().items()})
    for k, v in loaded.generator.state_dict().items():
        assert torch.equal(v, rounded.state_dict()[k]), k
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        assert torch.allclose(rounded(z), loaded.generator(z), atol=1e-6)


def test_cli_train_resume_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "gan",
        "--out",
        str(tmp_path),
        "--resolution",
        "16",
        "--z-dim",
        "16",
        "--w-dim",
        "16",
        "--mapping-layers",
        "2",
        "--mapping-hidden",
        "16",
        "--fmaps-base",
        "128",
        "--fmaps-max",
        "16",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--workers",
        "0",
        "--grid",
        "2",
        "--no-progress",
        "--data",
        FACES if HAVE_FACES else STAND_IN,
    ]
    res = runner.invoke(train_group, [*args, "--kimg", "0.008"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 2
    # Resume needs only --out (settings come from the checkpoint); extend to 3 steps.
    res = runner.invoke(
        train_group, ["gan", "--out", str(tmp_path), "--kimg", "0.012", "--workers", "0"]
    )
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 3
    res = runner.invoke(train_group, ["gan", "--out", str(tmp_path), "--fmaps-max", "32"])
    assert res.exit_code != 0 and "fmaps_max" in res.output
    res = runner.invoke(train_group, ["gan", "--out", str(tmp_path / "x"), "--dry-run"])
    assert res.exit_code == 0 and "parameters" in res.output
    # The device is a runtime setting: a resume may move to another one (and back).
    res = runner.invoke(
        train_group,
        ["gan", "--out", str(tmp_path), "--kimg", "0.016", "--workers", "0", "--device", "auto"],
    )
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 4
    if not torch.cuda.is_available():
        res = runner.invoke(train_group, ["gan", "--out", str(tmp_path), "--device", "cuda"])
        assert res.exit_code != 0 and "CUDA is not available" in res.output
        assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 4


# ------------------------------------------------------------------------------ distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, run_dir: str, cfg_dict: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    result = train_gan(GanTrainConfig.from_dict(cfg_dict), run_dir)
    state = result["state"]
    params = (*state.G.parameters(), *state.D.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    torch.save(flat, Path(run_dir) / f"params_rank{rank}.pt")


def _run_spawned_ddp(run_dir: Path, cfg: GanTrainConfig) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(_free_port())
    try:
        torch.multiprocessing.spawn(
            _ddp_worker, args=(2, str(run_dir), cfg.to_dict()), nprocs=2, join=True
        )
    finally:
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)


def test_ddp_two_gloo_processes_fast(tmp_path: Path) -> None:
    """2 CPU ranks (gloo): checkpoint written once by rank 0 with both ranks' RNG states."""
    cfg = tiny_config(batch_size=4, total_kimg=0.012, sample_every=100)
    _run_spawned_ddp(tmp_path, cfg)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert ckpt["step"] == 3 and ckpt["nimg"] == 12 and ckpt["world_size"] == 2
    assert ckpt["rng"].shape[0] == 2 and not torch.equal(ckpt["rng"][0], ckpt["rng"][1])
    p0, p1 = (torch.load(tmp_path / f"params_rank{r}.pt") for r in (0, 1))
    assert torch.equal(p0, p1)  # gradients averaged: ranks stay in sync
    lines = (tmp_path / LOG_FILE).read_text().splitlines()
    assert len(lines) == 3  # only rank 0 logs
    assert all(math.isfinite(json.loads(s)["loss_G"]) for s in lines)


@pytest.mark.slow
def test_ddp_torchrun_cli_and_resume(tmp_path: Path) -> None:
    """torchrun --nproc_per_node=2 through the CLI module, then a 2-rank resume."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    common = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "idinvert.training.train_cli",
        "gan",
        "--out",
        str(tmp_path),
        "--resolution",
        "32",
        "--z-dim",
        "32",
        "--w-dim",
        "32",
        "--mapping-layers",
        "2",
        "--mapping-hidden",
        "32",
        "--fmaps-base",
        "256",
        "--fmaps-max",
        "32",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--data",
        FACES if HAVE_FACES else STAND_IN,
        "--sample-every",
        "10",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run([*common, "--kimg", "0.16"], check=True, env=env, timeout=600)
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 20
    subprocess.run([*common, "--kimg", "0.24"], check=True, env=env, timeout=600)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert ckpt["step"] == 30 and ckpt["world_size"] == 2
    assert (tmp_path / "samples" / "grid_000030.png").is_file()


def test_config_dict_roundtrip() -> None:
    cfg = tiny_config()
    assert GanTrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        GanTrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    assert dataclasses.replace(cfg, total_kimg=1.0).incompatible_with(cfg) == []
    assert cfg.total_steps() == 4


# ------------------------------------------------------------------------------ teacher recipe


def test_latent_rng_maps_draws_through_the_normal_cdf() -> None:
    from idinvert.training.teacher import LatentRng

    rng = LatentRng(np.array([0.0, 1.5, 0.0, -40.0, 40.0, 0.3]))
    assert rng.uniform(2.0, 4.0) == pytest.approx(3.0)  # Φ(0) = 0.5
    assert rng.normal(1.0, 2.0) == pytest.approx(4.0)
    assert rng.integers(4) == 2  # ⌊4 · 0.5⌋
    assert rng.integers(3) == 0 and rng.integers(1, 4) == 3  # Φ → 0 and → 1 (clamped)
    assert rng.standard_normal() == pytest.approx(0.3) and rng.used == 6
    with pytest.raises(ValueError, match="more than 6"):
        rng.random()


@pytest.mark.skipif(not HAVE_FACES, reason="needs training/faces.py")
def test_teacher_latents_drive_the_renderer() -> None:
    from idinvert.training import faces
    from idinvert.training.teacher import DRAWS, LatentRng, params_from_latent, render_latents

    z = np.random.default_rng(0).standard_normal((3, 128))
    rng = LatentRng(z[0])
    faces.sample_params(rng)
    assert rng.used == DRAWS == TEACHER_DRAWS
    p = params_from_latent(z[0])
    assert [getattr(p, a) for a in faces.ATTRIBUTES] == pytest.approx(list(z[0, :8]))
    a, b = render_latents(z, 16), render_latents(z, 16)
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    z2 = z.copy()
    z2[:, DRAWS:] = 0.0  # unused coordinates change nothing
    assert np.array_equal(render_latents(z2, 16), a)
    assert not np.array_equal(a[0], a[1])


@pytest.mark.skipif(not HAVE_FACES, reason="needs training/faces.py")
def test_teacher_run_logs_reconstruction_and_resumes(tmp_path: Path) -> None:
    cfg = tiny_config(z_dim=64, teacher_weight=1.0, teacher_perceptual=0.0, bf16=True)
    result = train_gan(cfg, tmp_path / "a")
    assert result["step"] == 4
    lines = [json.loads(s) for s in (tmp_path / "a" / LOG_FILE).read_text().splitlines()]
    assert all(math.isfinite(r["rec_l1"]) for r in lines if r["rec_l1"] is not None)
    assert any(r["rec_l1"] is not None for r in lines)
    train_gan(dataclasses.replace(cfg, total_kimg=0.008), tmp_path / "b")
    train_gan(cfg, tmp_path / "b")
    a = load_checkpoint(tmp_path / "a" / CHECKPOINT_FILE)
    b = load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)
    _states_equal(a["G"], b["G"], atol=1e-6)
    with pytest.raises(ValueError, match="z_dim >= 64"):
        tiny_config(teacher_weight=1.0)


def test_init_generator_copies_the_model_weights(tmp_path: Path) -> None:
    from idinvert.training.gan import load_init_generator

    cfg = tiny_config(seed=1)
    G, _, _ = build_networks(cfg)
    G.truncation.w_avg.fill_(0.25)
    enc_cfg = EncoderConfig(resolution=16, w_dim=cfg.w_dim, channels_base=8, channels_max=16)
    config = ModelConfig("m", G.config, enc_cfg, None, ImageConfig(resolution=16))
    save_model_dir(ModelBundle(config, G, Encoder(enc_cfg).eval()), tmp_path / "m")
    fresh, fresh_ema, _ = build_networks(tiny_config(seed=2))
    load_init_generator(tmp_path / "m", fresh, fresh_ema)
    _states_equal(fresh.state_dict(), G.state_dict())
    _states_equal(fresh_ema.state_dict(), G.state_dict())
    with pytest.raises(ValueError, match="does not match"):
        load_init_generator(tmp_path / "m", build_networks(tiny_config(fmaps_max=8))[0])


def test_d_warmup_keeps_g_fixed(tmp_path: Path) -> None:
    cfg = tiny_config(d_warmup_kimg=0.008)  # 2 of 4 steps
    G0, _, _ = build_networks(cfg)
    train_gan(dataclasses.replace(cfg, total_kimg=0.008), tmp_path)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    _states_equal(ckpt["G"], G0.state_dict())
    D0 = build_networks(cfg)[2].state_dict()
    assert any(not torch.equal(ckpt["D"][k], D0[k]) for k in D0)
    train_gan(cfg, tmp_path)
    G4 = load_checkpoint(tmp_path / CHECKPOINT_FILE)["G"]
    assert any(not torch.equal(G4[k], G0.state_dict()[k]) for k in G4 if "w_avg" not in k)
    with pytest.raises(ValueError, match="d_warmup_kimg"):
        tiny_config(d_warmup_kimg=-1)


def test_ema_ramps_up_only_from_a_random_init() -> None:
    from idinvert.training.gan import ema_beta

    fresh = tiny_config(batch_size=4, ema_kimg=10.0, ema_rampup=0.05)
    restarted = dataclasses.replace(fresh, init_generator="some/model")
    full = 0.5 ** (4 / 10_000)
    assert ema_beta(fresh, 0) == pytest.approx(0.0)
    assert ema_beta(fresh, 1_000) == pytest.approx(0.5 ** (4 / 50))
    assert ema_beta(fresh, 400_000) == pytest.approx(full)
    # A restart from trained weights keeps G_ema close to them from the first step.
    assert ema_beta(restarted, 0) == pytest.approx(full)
    assert ema_beta(restarted, 1_000) == pytest.approx(full)
