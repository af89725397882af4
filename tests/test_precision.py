"""bfloat16 inversion: same objective as float32 on the networks, float32 codes and Adam."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from conftest import build_tiny_bundle
from PIL import Image

from idinvert.core.inversion import InversionSettings, invert, objective
from idinvert.core.precision import precision_dtype


@pytest.fixture(scope="module")
def bundle():
    return build_tiny_bundle(resolution=32, w_dim=16, perceptual=True)


def test_precision_names_are_checked():
    assert precision_dtype("fp32") == torch.float32
    assert precision_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="fp32, bf16.*'fp16'"):
        InversionSettings(precision="fp16")


def test_bf16_reaches_the_fp32_objective_with_float32_codes(bundle):
    torch.manual_seed(3)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    s = InversionSettings(steps=30, learning_rate=0.02)
    ref = invert(bundle, x, s)
    low = invert(bundle, x, s.with_(precision="bf16"))
    assert low.codes.dtype == torch.float32 and torch.isfinite(low.codes).all()
    # the encoder initialisation is float32 in both
    assert torch.equal(low.init_codes, ref.init_codes)
    # the trajectory differs (bf16 activations), the objective it reaches does not
    assert not torch.equal(low.codes, ref.codes)
    start = objective(bundle, x, ref.init_codes, s)
    # the helper evaluates what the loop logs (row 0 = at the encoder initialisation)
    np.testing.assert_allclose(start.numpy(), ref.history["total"][0], rtol=1e-5)
    end_ref = objective(bundle, x, ref.codes, s)
    end_low = objective(bundle, x, low.codes, s)
    assert (end_ref < start).all() and (end_low < start).all()
    assert torch.allclose(end_low, end_ref, rtol=0.02), (end_low, end_ref)
    # the logged losses are float32 numbers of the bf16 networks, close to the fp32 log
    assert low.history["total"].dtype == np.float32
    np.testing.assert_allclose(low.history["total"][0], ref.history["total"][0], rtol=0.05)


def test_lowered_copies_are_cached_and_leave_the_bundle_alone():
    b = build_tiny_bundle(resolution=16, w_dim=8, perceptual=True)
    low = b.lowered(torch.bfloat16)
    assert low is b.lowered(torch.bfloat16)
    # bf16 everywhere except: the generator's epilogues (instance norm, styles) and ToRGB,
    # the encoder's first (3-channel) and last (dense) blocks, the VGG's first convolution
    last_block = f"block{b.encoder.config.num_blocks - 1}."
    kept_prefixes = {
        "generator": ("synthesis.output",),
        "encoder": ("block0.", last_block),
        "perceptual": ("layer0.",),
    }
    for net_name, prefixes in kept_prefixes.items():
        for name, param in getattr(low, net_name).named_parameters():
            kept = name.startswith(prefixes) or ".epilogue." in name
            assert param.dtype == (torch.float32 if kept else torch.bfloat16), (net_name, name)
    assert any(p.dtype == torch.bfloat16 for p in low.generator.synthesis.parameters())
    # conv kernels channels-last (oneDNN's bf16 layout); float32 tensors other than kernels
    # are the bundle's own (no copy of the encoder's dense layer)
    kernel = low.perceptual.layer2.weight
    assert kernel.is_contiguous(memory_format=torch.channels_last) and kernel.ndim == 4
    assert low.encoder.get_submodule(last_block + "fc").weight.data_ptr() == (
        b.encoder.get_submodule(last_block + "fc").weight.data_ptr()
    )
    # the VGG's input normalisation constants keep their float32 values
    assert torch.equal(low.perceptual.normalize.shift, b.perceptual.normalize.shift)
    for net in low.networks():
        assert not any(p.requires_grad for p in net.parameters())
    for net in b.networks():
        assert {p.dtype for p in net.parameters()} == {torch.float32}
    assert b.lowered(torch.float32) is b
    b.to("cpu")  # moving the bundle drops the copies (they would sit on the old device)
    assert b.lowered(torch.bfloat16) is not low


def test_cli_precision_option(capsys, tmp_path, tiny_model_dir):
    face_png = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), np.uint8)).save(face_png)
    out = tmp_path / "out"
    args = ("invert", face_png, "--model", tiny_model_dir, "--steps", "2")
    res = run_cli(capsys, *args, "--perceptual-weight", "0", "--precision", "bf16", "--out", out)
    assert res.code == 0, res.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["precision"] == "bf16"
    assert np.isfinite(np.load(out / "codes.npy")).all()
    bad = run_cli(capsys, *args, "--precision", "fp16", "--out", tmp_path / "bad")
    assert bad.code == 2 and "fp16" in bad.err and not (tmp_path / "bad").exists()


def test_float32_parts_of_a_lowered_generator_keep_their_exact_values():
    b = build_tiny_bundle(resolution=16, w_dim=8)
    low = b.lowered(torch.bfloat16).generator
    original = dict(b.generator.named_parameters())
    kept = [(n, p) for n, p in low.named_parameters() if p.dtype == torch.float32]
    assert kept
    for name, param in kept:
        assert torch.equal(param, original[name]), name


@pytest.mark.parametrize("batch", [1, 2])
def test_gradients_through_lowered_copies_match_at_every_batch_size(bundle, batch):
    """A batch of one is what the demo inverts; torch 2.14's instance_norm backward is wrong
    for channels-last batches of one (the lowered copies' layout), so the generator uses
    group norm there. Checked on the gradient that every step follows."""
    from idinvert.core.precision import lowered_copy

    torch.manual_seed(batch)
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    wp = bundle.generator.z_to_wp(torch.randn(batch, 16)).detach()

    def grad(G: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
        z = wp.clone().requires_grad_(True)
        (G.synthesis(z.to(dtype)).float() - x).square().mean().backward()
        return z.grad.flatten()

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    ref = grad(bundle.generator, torch.float32)
    # a float32 copy: the same arithmetic in the copies' channels-last layout
    assert cosine(grad(lowered_copy(bundle.generator, torch.float32), torch.float32), ref) > 0.999
    assert cosine(grad(bundle.lowered(torch.bfloat16).generator, torch.bfloat16), ref) > 0.99


def test_instance_norm_is_right_in_every_layout():
    from idinvert.core.models.generator import instance_norm

    torch.manual_seed(0)
    for shape in [(1, 8, 6, 6), (3, 8, 6, 6), (1, 1, 6, 6)]:
        x = torch.randn(shape) * 3 + 1
        g = torch.randn(shape)
        ref_in = x.clone().requires_grad_(True)
        ref = torch.nn.functional.instance_norm(ref_in, eps=1e-8)
        ref.backward(g)
        for layout in (torch.contiguous_format, torch.channels_last):
            leaf = x.clone().requires_grad_(True)
            y = instance_norm(leaf.contiguous(memory_format=layout))
            y.backward(g.contiguous(memory_format=layout))
            torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(leaf.grad, ref_in.grad, rtol=1e-4, atol=1e-5)
