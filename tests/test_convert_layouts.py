"""Conversion of official-layout checkpoints in configurations the vector set does not cover:
128 px (fused up-convolution), z dim ≠ w dim, hidden mapping width ≠ w dim."""

from __future__ import annotations

import math

import pytest
import torch
from cli_helpers import run_cli

from idinvert.core.modeldir import load_model_dir
from idinvert.core.models.encoder import Encoder, EncoderConfig
from idinvert.core.models.generator import Generator, GeneratorConfig
from idinvert.core.models.layers import blur_kernel


def official_generator_state(g: Generator) -> dict[str, torch.Tensor]:
    """Our generator's weights in the official checkpoint layout: plus progressive growing's
    dead ToRGBs, ``lod``, blur kernels and the truncation coefficients."""
    cfg = g.config
    state = dict(g.state_dict())
    res_log2 = int(math.log2(cfg.resolution))
    for k in range(res_log2 - 2):
        cin = cfg.channels(4 * 2**k)
        state[f"synthesis.output{k}.conv.weight"] = torch.randn(3, cin, 1, 1)
        state[f"synthesis.output{k}.bias"] = torch.zeros(3)
    state["synthesis.lod"] = torch.tensor(0.0)
    for i in range(2, cfg.num_layers, 2):
        res = 2 ** (i // 2 + 2)
        state[f"synthesis.layer{i}.blur.kernel"] = blur_kernel(cfg.channels(res))
    state["truncation.truncation"] = g.truncation.truncation.clone()
    return state


@pytest.fixture(scope="module")
def official_128(tmp_path_factory):
    torch.manual_seed(0)
    cfg = GeneratorConfig(
        resolution=128,
        z_dim=48,
        w_dim=32,
        mapping_layers=4,
        mapping_hidden_dim=40,
        fmaps_base=1024,
        fmaps_max=32,
    )
    g = Generator(cfg).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if "mapping" in name and name.endswith("fc.weight"):
                p.normal_(0, 100.0)
            elif name.endswith(("apply_noise.weight", "epilogue.bias")):
                p.normal_(0, 0.1)
        g.truncation.w_avg.normal_()
    e = Encoder(EncoderConfig(resolution=128, w_dim=32, channels_base=4, channels_max=16)).eval()
    root = tmp_path_factory.mktemp("official128")
    torch.save(official_generator_state(g), root / "generator.pth")
    torch.save(e.state_dict(), root / "encoder.pth")
    return g, e, root


def test_fused_128_with_distinct_dims_round_trips(capsys, official_128):
    g, e, root = official_128
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        root / "generator.pth",
        "--encoder",
        root / "encoder.pth",
        "--out",
        root / "model",
    )
    assert res.code == 0, res.err
    bundle = load_model_dir(root / "model")
    cfg = bundle.config.generator
    assert (cfg.resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (128, 48, 32, 4)
    assert cfg.hidden_dim == 40 and cfg.fused_scale == "auto"
    assert bundle.generator.synthesis.layer10.fused and not bundle.generator.synthesis.layer8.fused
    z = torch.randn(3, 48)
    with torch.no_grad():
        torch.testing.assert_close(bundle.generator(z), g(z))
        x = torch.rand(2, 3, 128, 128) * 2 - 1
        torch.testing.assert_close(bundle.encoder(x), e(x))


def test_invert_and_render_through_the_cli(capsys, tmp_path, official_128):
    import numpy as np
    from PIL import Image

    _g, _e, root = official_128
    model = root / "model"
    if not model.exists():
        run_cli(
            capsys,
            "convert",
            "--generator",
            root / "generator.pth",
            "--encoder",
            root / "encoder.pth",
            "--out",
            model,
        )
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(
        photo
    )
    res = run_cli(
        capsys,
        "invert",
        photo,
        "--model",
        model,
        "--out",
        tmp_path / "o",
        "--steps",
        "2",
        "--perceptual-weight",
        "0",
    )
    assert res.code == 0, res.err
    codes = np.load(tmp_path / "o" / "codes.npy")
    assert codes.shape == (1, 12, 32)


def test_wrong_shapes_are_named(capsys, tmp_path, official_128):
    _g, _e, root = official_128
    state = torch.load(root / "generator.pth", weights_only=True)
    state["synthesis.layer3.conv.weight"] = torch.zeros(5, 5, 3, 3)
    del state["synthesis.layer5.epilogue.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        bad,
        "--encoder",
        root / "encoder.pth",
        "--out",
        tmp_path / "m",
    )
    assert res.code != 0
    assert "synthesis.layer5.epilogue.bias" in res.err and "synthesis.layer3.conv.weight" in res.err
    assert not (tmp_path / "m").exists()
    state = torch.load(root / "generator.pth", weights_only=True)
    state["synthesis.extra.weight"] = torch.zeros(1)
    torch.save(state, bad)
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        bad,
        "--encoder",
        root / "encoder.pth",
        "--out",
        tmp_path / "m",
    )
    assert res.code != 0 and "unexpected keys: synthesis.extra.weight" in res.err
