"""Conversion of checkpoints in the official layouts, built from the spec (never from our own
modules): the ffhq256 manifest's exact names and shapes, fused up-convolution blocks
(``synthesis.layer{i}.weight`` in TF layout, no ``conv`` submodule), progressive-growing
leftovers, absent or stale truncation coefficients, 64/128/256 px, z dim != w dim.

Converted models are compared with an independent functional restatement of the official
forward pass (``official_layout.official_synthesis`` / ``official_encode``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from official_layout import (
    REDUCED_FFHQ256,
    OfficialConfig,
    official_encode,
    official_encoder_state,
    official_generator_state,
    official_mapping,
    official_synthesis,
    official_vgg16_state,
)
from vectors import REFERENCE

from idinvert.core.modeldir import load_model_dir

FFHQ = OfficialConfig()
EXAMPLE = REFERENCE / "examples" / "000001.png"


def _manifest() -> dict:
    return json.loads((REFERENCE / "manifest_ffhq256.json").read_text())


@pytest.mark.parametrize(
    ("section", "build"),
    [
        ("generator", lambda: official_generator_state(FFHQ, empty=True)),
        ("encoder", lambda: official_encoder_state(FFHQ, empty=True)),
        ("perceptual_vgg16", official_vgg16_state),
    ],
)
def test_builders_reproduce_the_ffhq256_manifest(section, build):
    """The fixtures' layouts are the real checkpoints' layouts, key for key, in order."""
    expected = [(e["name"], e["shape"], e["dtype"]) for e in _manifest()[section]["state_dict"]]
    state = build()
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    assert got == expected


def test_manifest_fused_blocks_have_no_conv_submodule():
    names = {e["name"] for e in _manifest()["generator"]["state_dict"]}
    assert "synthesis.layer10.weight" in names and "synthesis.layer10.conv.weight" not in names
    assert "synthesis.layer8.conv.weight" in names


CONFIGS = {
    # 64 px, plain up-convolutions, z dim != w dim, hidden width != both, stale truncation.
    "64_plain_zw": (
        OfficialConfig(
            resolution=64,
            z_dim=48,
            w_dim=32,
            mapping_layers=3,
            mapping_hidden=40,
            fmaps_base=512,
            fmaps_max=32,
            encoder_base=4,
            encoder_max=16,
        ),
        "stale",
    ),
    # 64 px with fused_scale=True (every up-convolution fused), truncation key absent.
    "64_all_fused": (
        OfficialConfig(
            resolution=64,
            z_dim=32,
            w_dim=32,
            mapping_layers=2,
            fmaps_base=512,
            fmaps_max=32,
            fused_scale=True,
            encoder_base=4,
            encoder_max=16,
        ),
        "absent",
    ),
    # 128 px, 'auto' (fused at 128), z dim != w dim.
    "128_auto": (
        OfficialConfig(
            resolution=128,
            z_dim=48,
            w_dim=32,
            mapping_layers=4,
            mapping_hidden=40,
            fmaps_base=1024,
            fmaps_max=32,
            encoder_base=4,
            encoder_max=16,
        ),
        "fresh",
    ),
}


def _write_official(cfg: OfficialConfig, root: Path, truncation: str) -> tuple[dict, dict]:
    g = official_generator_state(cfg, seed=1)
    e = official_encoder_state(cfg, seed=2)
    if truncation == "absent":
        del g["truncation.truncation"]
    elif truncation == "stale":
        g["truncation.truncation"] = torch.rand_like(g["truncation.truncation"])
    root.mkdir(parents=True, exist_ok=True)
    torch.save(g, root / "styleganinv_test_generator.pth")
    torch.save(e, root / "styleganinv_test_encoder.pth")
    fresh = official_generator_state(cfg, seed=1)["truncation.truncation"]
    g["truncation.truncation"] = fresh  # what the official loader computes and uses
    return g, e


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_official_layout_converts_and_matches_the_official_forward(capsys, tmp_path, name):
    cfg, truncation = CONFIGS[name]
    g_sd, e_sd = _write_official(cfg, tmp_path, truncation)
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        tmp_path / "styleganinv_test_generator.pth",
        "--encoder",
        tmp_path / "styleganinv_test_encoder.pth",
        "--out",
        tmp_path / "model",
    )
    assert res.code == 0, res.err
    bundle = load_model_dir(tmp_path / "model")
    gc = bundle.config.generator
    assert (gc.resolution, gc.z_dim, gc.w_dim, gc.mapping_layers, gc.hidden_dim) == (
        cfg.resolution,
        cfg.z_dim,
        cfg.w_dim,
        cfg.mapping_layers,
        cfg.hidden,
    )
    assert gc.fused_scale == cfg.fused_scale
    L = cfg.num_layers
    torch.manual_seed(0)
    wp = torch.randn(2, L, cfg.w_dim)
    z = torch.randn(2, cfg.z_dim)
    x = torch.rand(2, 3, cfg.resolution, cfg.resolution) * 2 - 1
    with torch.no_grad():  # images: the vector sets' float32 tolerance (atol 1e-4)
        torch.testing.assert_close(
            bundle.generator.synthesis(wp), official_synthesis(g_sd, wp), atol=1e-4, rtol=1e-4
        )
        ours_wp = bundle.generator.z_to_wp(z)
        torch.testing.assert_close(ours_wp, official_mapping(g_sd, z, L), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            bundle.encoder(x).view(2, L, -1), official_encode(e_sd, x, L), atol=1e-4, rtol=1e-4
        )


@pytest.fixture(scope="module")
def reduced_256(tmp_path_factory) -> Path:
    """A 256 px official-layout model at reduced widths (w dim 512, so the official ffhq256
    boundaries apply), converted with its boundaries and a VGG16 in the official layout."""
    cfg = REDUCED_FFHQ256
    root = tmp_path_factory.mktemp("reduced256")
    _write_official(cfg, root, "stale")
    torch.save(official_vgg16_state(), root / "vgg16.pth")
    from idinvert.hub.convert import convert_checkpoints

    return convert_checkpoints(
        root / "styleganinv_test_generator.pth",
        root / "styleganinv_test_encoder.pth",
        root / "model",
        perceptual_path=root / "vgg16.pth",
        boundaries_dir=REFERENCE / "boundaries" / "stylegan_ffhq256",
    )


def test_reduced_256_inverts_renders_and_edits_through_the_cli(capsys, tmp_path, reduced_256):
    bundle = load_model_dir(reduced_256)
    assert bundle.config.generator.fused_scale == "auto"
    assert bundle.generator.synthesis.layer10.fused and bundle.generator.synthesis.layer12.fused
    assert not bundle.generator.synthesis.layer8.fused
    assert sorted(p.stem for p in (reduced_256 / "boundaries").iterdir()) == [
        "age",
        "expression",
        "eyeglasses",
        "gender",
        "pose",
    ]
    out = tmp_path / "inv"
    res = run_cli(capsys, "invert", EXAMPLE, "--model", reduced_256, "--out", out, "--steps", "2")
    assert res.code == 0, res.err
    codes = np.load(out / "codes.npy")
    assert codes.shape == (1, 14, 512) and codes.dtype == np.float32
    res = run_cli(
        capsys,
        "edit",
        "manipulate",
        "--model",
        reduced_256,
        "--codes",
        out / "codes.npy",
        "--boundary",
        "age",
        "--steps",
        "3",
        "--out",
        tmp_path / "age",
    )
    assert res.code == 0, res.err
    edited = np.load(tmp_path / "age" / "codes.npy")
    assert edited.shape == (1, 3, 14, 512)
    # age's official default layers are 0-5: the others are untouched
    np.testing.assert_array_equal(edited[0, :, 6:], np.repeat(codes[:, 6:], 3, axis=0))
    assert not np.allclose(edited[0, 0, :6], edited[0, 2, :6])
    res = run_cli(
        capsys,
        "render",
        "--model",
        reduced_256,
        "--codes",
        out / "codes.npy",
        "--out",
        tmp_path / "r",
    )
    assert res.code == 0, res.err
    from PIL import Image

    (png,) = sorted((tmp_path / "r").glob("*.png"))
    assert Image.open(png).size == (256, 256)


def test_a_code_carrying_pickle_is_refused_without_advice_to_disable_safety(capsys, tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"mapping.dense0.fc.weight": Payload()}, evil)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a checkpoint")
    for bad in (evil, junk):
        res = run_cli(
            capsys, "convert", "--generator", bad, "--encoder", bad, "--out", tmp_path / "m"
        )
        assert res.code != 0
        assert "weights_only` set to `False" not in res.err and "will likely succeed" not in res.err
        assert "Accepted: an official IDInvert .pth file" in res.err
        assert not (tmp_path / "m").exists()
    res = run_cli(
        capsys, "convert", "--generator", evil, "--encoder", evil, "--out", tmp_path / "m"
    )
    assert "refused" in res.err and "system" in res.err
    res = run_cli(
        capsys, "convert", "--generator", junk, "--encoder", junk, "--out", tmp_path / "m"
    )
    assert "not a PyTorch checkpoint" in res.err


@pytest.mark.slow
def test_full_size_ffhq256_layout_converts_renders_and_inverts(capsys, tmp_path):
    """The real ffhq256 sizes (≈ 780 MB of random weights): convert, render, invert 1 step."""
    _write_official(FFHQ, tmp_path, "stale")
    torch.save(official_vgg16_state(), tmp_path / "vgg16.pth")
    res = run_cli(
        capsys,
        "convert",
        "--generator",
        tmp_path / "styleganinv_test_generator.pth",
        "--encoder",
        tmp_path / "styleganinv_test_encoder.pth",
        "--perceptual",
        tmp_path / "vgg16.pth",
        "--boundaries",
        REFERENCE / "boundaries" / "stylegan_ffhq256",
        "--out",
        tmp_path / "model",
    )
    assert res.code == 0, res.err
    res = run_cli(
        capsys,
        "invert",
        EXAMPLE,
        "--model",
        tmp_path / "model",
        "--out",
        tmp_path / "o",
        "--steps",
        "1",
    )
    assert res.code == 0, res.err
    assert np.load(tmp_path / "o" / "codes.npy").shape == (1, 14, 512)


def test_wrong_shapes_missing_and_unexpected_keys_are_named(capsys, tmp_path):
    cfg, _ = CONFIGS["128_auto"]
    _write_official(cfg, tmp_path, "fresh")
    encoder = tmp_path / "styleganinv_test_encoder.pth"
    state = torch.load(tmp_path / "styleganinv_test_generator.pth", weights_only=True)
    state["synthesis.layer3.conv.weight"] = torch.zeros(5, 5, 3, 3)
    del state["synthesis.layer5.epilogue.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    res = run_cli(
        capsys, "convert", "--generator", bad, "--encoder", encoder, "--out", tmp_path / "m"
    )
    assert res.code != 0
    assert "synthesis.layer5.epilogue.bias" in res.err and "synthesis.layer3.conv.weight" in res.err
    assert not (tmp_path / "m").exists()
    state = torch.load(tmp_path / "styleganinv_test_generator.pth", weights_only=True)
    state["synthesis.extra.weight"] = torch.zeros(1)
    torch.save(state, bad)
    res = run_cli(
        capsys, "convert", "--generator", bad, "--encoder", encoder, "--out", tmp_path / "m"
    )
    assert res.code != 0 and "unexpected keys: synthesis.extra.weight" in res.err
    # a fused block stored with a conv submodule as well is ambiguous
    state = torch.load(tmp_path / "styleganinv_test_generator.pth", weights_only=True)
    state["synthesis.layer10.conv.weight"] = torch.zeros(32, 32, 3, 3)
    torch.save(state, bad)
    res = run_cli(
        capsys, "convert", "--generator", bad, "--encoder", encoder, "--out", tmp_path / "m"
    )
    assert res.code != 0 and "both 'synthesis.layer10.weight'" in res.err
