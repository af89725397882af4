"""Tests of domain-guided encoder training (training/encoder_train.py, encoder_cli.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from encoder_fixtures import (
    FACES,
    make_encoder_run,
    make_gan_run,
    tiny_encoder_config,
    tiny_gan_config,
)
from safetensors.torch import load_file

from idinvert.core.models.perceptual import (
    TORCHVISION_OUTPUT_SCALE,
    PerceptualConfig,
    PerceptualNet,
)
from idinvert.training import encoder_train as et
from idinvert.training import gan
from idinvert.training.discriminator import Discriminator
from idinvert.training.encoder_cli import encoder_command, export_command
from idinvert.training.splits import (
    TRAIN_SEED_LIMIT,
    check_train_seed,
    render_faces,
    to_float_images,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gan_run(tmp_path_factory.mktemp("enc") / "gan")


def _random_vgg() -> PerceptualNet:
    torch.manual_seed(3)
    return PerceptualNet(PerceptualConfig("torchvision", TORCHVISION_OUTPUT_SCALE, "random"))


def test_config_resolution_follows_the_paper_scaled() -> None:
    gan_cfg = tiny_gan_config(resolution=64, seed=7)
    cfg = et.EncoderTrainConfig(gan_run="", total_kimg=80.0).resolved(gan_cfg, True)
    assert cfg.lr == pytest.approx(1e-4 * math.sqrt(16 / 128))
    assert cfg.r1_gamma == pytest.approx(10 * (64 / 256) ** 2)
    assert cfg.decay_kimg == pytest.approx(20.0)
    assert (cfg.data, cfg.data_seed, cfg.perceptual) == (FACES, 7, "torchvision")
    assert (cfg.beta1, cfg.beta2, cfg.perceptual_weight, cfg.adversarial_weight) == (
        0.9,
        0.99,
        5e-5,
        0.08,
    )
    assert cfg.lr_at(20_000) == pytest.approx(cfg.lr * 0.8)
    assert cfg.trainable_gamma and cfg.mirror and cfg.latent_weight == 0
    assert et.EncoderTrainConfig().resolved(gan_cfg, False).perceptual == "none"
    with pytest.raises(ValueError, match="reserved"):
        et.EncoderTrainConfig(data_seed=TRAIN_SEED_LIMIT)
    with pytest.raises(ValueError):
        check_train_seed(-1)


def test_encoder_init_matches_code_statistics(gan_run: Path) -> None:
    gan_cfg, ckpt = et.load_gan_parts(gan_run)
    G = et.frozen_generator(gan_cfg.generator_config(), ckpt["G_ema"])
    cfg = tiny_encoder_config(gan_run).resolved(gan_cfg, False)
    E = et.build_encoder(cfg, G)
    assert E.config.trainable_gamma and E.config.code_layers == G.num_layers
    assert all(p.requires_grad for p in E.parameters())
    wp = G.z_to_wp(torch.randn(512, G.config.z_dim), psi=1.0)
    E.train()
    codes = E(torch.rand(64, 3, 16, 16) * 2 - 1)  # batch statistics → BN output = γ·n + β
    assert codes.shape == (64, G.num_layers, G.config.w_dim)
    bn = et.output_bn(E)
    assert torch.allclose(codes.mean(0).flatten(), bn.bias, atol=1e-4)
    assert torch.allclose(codes.std(0, unbiased=False).flatten(), bn.weight, rtol=0.05)  # BN eps
    wp = wp.flatten(1)
    bias, weight = bn.bias.detach(), bn.weight.detach()
    assert float((bias - wp.mean(0)).abs().mean()) < 0.1 * float(wp.std(0).mean())
    assert float((weight / wp.std(0)).log().abs().mean()) < 0.1


def test_pixel_loss_decreases_on_a_fixed_batch(gan_run: Path) -> None:
    gan_cfg, ckpt = et.load_gan_parts(gan_run)
    cfg = tiny_encoder_config(gan_run, lr=3e-3).resolved(gan_cfg, False)
    G = et.frozen_generator(gan_cfg.generator_config(), ckpt["G_ema"])
    E = et.build_encoder(cfg, G)
    D = Discriminator(gan_cfg.discriminator_config())
    D.load_state_dict(ckpt["D"])
    state = et.EncoderState(E, D, G, *et.make_optimizers(cfg, E, D))
    x = to_float_images(render_faces(FACES, 0, 0, 8, 16)[0])

    def pixel() -> float:
        with torch.no_grad():
            return float((G.synthesis(E(x)) - x).square().mean())

    before = pixel()
    vgg = _random_vgg()
    for _ in range(20):
        stats = et.train_step(state, x, cfg, gan.DistContext(), vgg)
    assert {"loss_E", "pixel", "perceptual", "adversarial", "loss_D", "r1", "lr"} <= set(stats)
    assert all(math.isfinite(v) for v in stats.values())
    assert pixel() < 0.6 * before
    assert all(p.grad is None or not p.requires_grad for p in G.parameters())


def _states_close(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0), k


def test_resume_equals_uninterrupted_run(gan_run: Path, tmp_path: Path) -> None:
    # decay_kimg is explicit: by default it is a quarter of the *first* total_kimg (stored)
    overrides = dict(
        total_kimg=0.016,
        decay_kimg=0.004,
        latent_weight=1.0,
        latent_kimg=0.008,
        perceptual="torchvision",
    )
    cfg = tiny_encoder_config(gan_run, **overrides)
    full = et.train_encoder(cfg, tmp_path / "full", resume=False, perceptual=_random_vgg())
    half = dataclasses.replace(cfg, total_kimg=0.008)
    et.train_encoder(half, tmp_path / "split", resume=False, perceptual=_random_vgg())
    assert et.load_run_config(tmp_path / "split").total_kimg == 0.008
    resumed = et.train_encoder(cfg, tmp_path / "split", resume=True, perceptual=_random_vgg())
    assert full["step"] == resumed["step"] == 4
    a = et.load_checkpoint(tmp_path / "full" / et.CHECKPOINT_FILE)
    b = et.load_checkpoint(tmp_path / "split" / et.CHECKPOINT_FILE)
    for key in ("E", "D"):
        _states_close(a[key], b[key])
    log = [json.loads(x) for x in (tmp_path / "full" / et.LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert log[0]["latent"] is not None and log[-1]["latent"] is None  # warm-up ended
    assert log[-1]["val_mse"] is not None and log[-1]["perceptual"] is not None
    grids = sorted(p.name for p in (tmp_path / "full" / "samples").glob("grid_*.png"))
    assert grids == ["grid_000000.png", "grid_000002.png", "grid_000004.png"]
    stored = json.loads((tmp_path / "full" / "config.json").read_text())
    assert stored["perceptual"] == "torchvision" and stored["r1_gamma"] > 0

    with pytest.raises(ValueError, match="different configuration"):
        et.train_encoder(
            dataclasses.replace(cfg, adversarial_weight=0.5, total_kimg=0.02),
            tmp_path / "full",
            resume=True,
            perceptual=_random_vgg(),
        )

    E, G, info = et.export_encoder(tmp_path / "full")
    assert not E.training and info["step"] == 4 and info["gan"]["step"] == 1
    assert torch.equal(E.state_dict()["block0.conv.weight"], a["E"]["block0.conv.weight"])


def test_missing_vgg_is_an_error_only_when_required(
    gan_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(et, "find_perceptual_net", lambda device="cpu": None)
    cfg = tiny_encoder_config(gan_run, perceptual="auto", total_kimg=0.004)
    result = et.train_encoder(cfg, tmp_path / "auto", resume=False)
    assert result["config"].perceptual == "none"  # recorded: trained without the VGG term
    with pytest.raises(RuntimeError, match="VGG16"):
        et.train_encoder(
            dataclasses.replace(cfg, perceptual="torchvision"), tmp_path / "req", resume=False
        )


def test_encoder_cli(gan_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "--out",
        str(out),
        "--kimg",
        "0.004",
        "--batch-size",
        "4",
        "--channels-base",
        "4",
        "--channels-max",
        "16",
        "--perceptual",
        "none",
        "--threads",
        "1",
        "--workers",
        "0",
        "--grid",
        "2",
        "--no-progress",
    ]
    res = runner.invoke(encoder_command, args)
    assert res.exit_code == 2 and "--gan" in res.output
    res = runner.invoke(encoder_command, ["--gan", str(gan_run), *args, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "E: " in res.output and '"r1_gamma": 0.0390625' in res.output
    res = runner.invoke(encoder_command, ["--gan", str(gan_run), *args])
    assert res.exit_code == 0, res.output
    assert "done: step 1" in res.output
    assert (out / et.CHECKPOINT_FILE).is_file() and (out / et.LOG_FILE).is_file()
    # The device is a runtime setting of a resume; one that is not here is a clear error.
    res = runner.invoke(encoder_command, ["--out", str(out), "--kimg", "0.008", "--device", "auto"])
    assert res.exit_code == 0, res.output
    assert "done: step 2" in res.output
    if not torch.cuda.is_available():
        res = runner.invoke(
            encoder_command, ["--out", str(out), "--kimg", "0.012", "--device", "cuda"]
        )
        assert res.exit_code != 0 and "CUDA is not available" in res.output
        assert et.load_checkpoint(out / et.CHECKPOINT_FILE)["step"] == 2


def test_warm_start_from_a_model_directory(gan_run: Path, tmp_path: Path) -> None:
    first = make_encoder_run(gan_run, tmp_path / "first")
    model = tmp_path / "model"
    res = CliRunner().invoke(
        export_command, ["--encoder", str(first), "--out", str(model), "--perceptual", "none"]
    )
    assert res.exit_code == 0, res.output
    shipped = load_file(str(model / "encoder.safetensors"))
    gan_cfg, ckpt = et.load_gan_parts(make_gan_run(tmp_path / "other_gan", seed=5))
    G = et.frozen_generator(gan_cfg.generator_config(), ckpt["G_ema"])
    cfg = tiny_encoder_config(gan_run, init_encoder=str(model)).resolved(gan_cfg, False)
    assert cfg.init_encoder == str(model.resolve())
    E = et.build_encoder(cfg, G)
    fresh = et.build_encoder(dataclasses.replace(cfg, init_encoder=""), G)
    (out_bn,) = [n for n, m in E.named_modules() if m is et.output_bn(E)]
    rematched = {f"{out_bn}.weight", f"{out_bn}.bias"}
    state, fresh_state = E.state_dict(), fresh.state_dict()
    copied = [k for k in shipped if k not in rematched and shipped[k].is_floating_point()]
    assert len(copied) > 10
    for k in copied:  # everything but the output BN's affine comes from the file (fp16 → fp32)
        assert state[k].dtype == torch.float32
        assert torch.equal(state[k], shipped[k].float()), k
        if k.endswith("weight") and state[k].ndim > 1:
            assert not torch.equal(state[k], fresh_state[k]), k
    assert all(p.requires_grad for p in E.parameters())
    bn = et.output_bn(E)  # re-matched to the other generator's codes, as a fresh encoder's
    assert torch.equal(bn.bias, et.output_bn(fresh).bias)
    assert torch.equal(bn.weight, et.output_bn(fresh).weight)

    wider = dataclasses.replace(cfg, channels_base=8)
    with pytest.raises(ValueError, match=r"init_encoder: .*encoder.safetensors.*wrong shapes"):
        et.build_encoder(wider, G)
    with pytest.raises(ValueError, match="init_encoder: .*missing encoder.safetensors"):
        et.build_encoder(dataclasses.replace(cfg, init_encoder=str(tmp_path)), G)
    run = et.train_encoder(tiny_encoder_config(gan_run, init_encoder=str(model)), tmp_path / "w")
    assert run["config"].init_encoder == str(model.resolve())


def test_ddp_torchrun_two_ranks(gan_run: Path, tmp_path: Path) -> None:
    """torchrun --nproc_per_node=2 through the module entry point (gloo, CPU)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "idinvert.training.encoder_cli",
        "encoder",
        "--gan",
        str(gan_run),
        "--out",
        str(tmp_path),
        "--kimg",
        "0.008",
        "--batch-size",
        "4",
        "--channels-base",
        "4",
        "--channels-max",
        "16",
        "--perceptual",
        "none",
        "--threads",
        "1",
        "--workers",
        "0",
        "--grid",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    if done.returncode != 0 and "rendezvous" in (done.stderr or "").lower():
        # a c10d port race with another process on this host: one retry, same assertions
        done = subprocess.run(
            cmd + ["--no-resume"], env=env, timeout=300, capture_output=True, text=True
        )
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    ckpt = et.load_checkpoint(tmp_path / et.CHECKPOINT_FILE)
    assert ckpt["step"] == 2 and ckpt["world_size"] == 2 and ckpt["rng"].shape[0] == 2
    assert (tmp_path / "samples" / "grid_000002.png").is_file()
