"""The compiled inversion step (``compile_step=True``) on the CPU: same objective as eager.

On CUDA the same code path compiles in "reduce-overhead" mode (CUDA graphs); that capture is
only requested on CUDA devices (checked here without a GPU), and measured by
``benchmarks/inversion.py --device cuda --compile``.
"""

from __future__ import annotations

import numpy as np
import torch
from conftest import build_tiny_bundle

from idinvert.core import compiled as compiled_module
from idinvert.core.inversion import InversionSettings, invert


def test_compiled_step_reaches_the_eager_codes_and_losses():
    bundle = build_tiny_bundle(resolution=16, w_dim=8, perceptual=True)
    torch.manual_seed(3)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    settings = InversionSettings(steps=4)
    eager = invert(bundle, x, settings)
    seen: list[int] = []
    fast = invert(bundle, x, settings, compile_step=True, callback=lambda i: seen.append(i.step))
    assert seen == [1, 2, 3, 4]
    torch.testing.assert_close(fast.codes, eager.codes, atol=1e-4, rtol=1e-4)
    for name in ("pixel", "perceptual", "domain", "total"):
        np.testing.assert_allclose(fast.history[name], eager.history[name], rtol=1e-4, atol=1e-6)
    # the networks' stored tensors were left alone by the trace; eager still matches after it
    again = invert(bundle, x, settings)
    torch.testing.assert_close(again.codes, eager.codes)


def test_compiled_bf16_step_with_the_fused_epilogue_reaches_the_eager_objective():
    """bf16 + compile is what a GPU Space runs: the generator's fused epilogue (a custom
    autograd function) goes through the trace and the step lands where eager bf16 does."""
    bundle = build_tiny_bundle(resolution=16, w_dim=8, perceptual=True)
    torch.manual_seed(3)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    settings = InversionSettings(steps=4, precision="bf16")
    eager = invert(bundle, x, settings)
    fast = invert(bundle, x, settings, compile_step=True)
    assert torch.isfinite(fast.codes).all() and fast.codes.dtype == torch.float32
    # bf16 rounding differs once inductor fuses the elementwise work: close, not equal
    torch.testing.assert_close(fast.codes, eager.codes, atol=0.03, rtol=0)
    np.testing.assert_allclose(fast.history["total"], eager.history["total"], rtol=0.01)
    assert (fast.history["total"][-1] < fast.history["total"][0]).all()


def test_cuda_graphs_are_requested_on_cuda_only(monkeypatch):
    modes: list[object] = []

    def fake_compile(function, mode=None, dynamic=None):
        modes.append(mode)
        return function

    monkeypatch.setattr(compiled_module.torch, "compile", fake_compile)
    compiled_module.compiled(lambda: torch.zeros(1), torch.device("cpu"))
    compiled_module.compiled(lambda: torch.zeros(1), torch.device("cuda"))
    assert modes == [None, "reduce-overhead"]
    compiled_module.mark_step(torch.device("cpu"))  # a no-op without CUDA


def test_history_without_a_callback_matches_the_streamed_one():
    bundle = build_tiny_bundle(resolution=16, w_dim=8)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    settings = InversionSettings(steps=3, perceptual_weight=0)
    quiet = invert(bundle, x, settings)
    streamed: list[dict[str, np.ndarray]] = []
    loud = invert(bundle, x, settings, callback=lambda info: streamed.append(info.losses))
    for name in ("pixel", "domain", "total"):
        assert quiet.history[name].shape == (3, 1)
        np.testing.assert_array_equal(quiet.history[name], loud.history[name])
        np.testing.assert_array_equal(np.stack([s[name] for s in streamed]), loud.history[name])


def test_cli_compile_flag_reaches_the_inversion(capsys, tmp_path, tiny_model_dir, monkeypatch):
    import json

    from cli_helpers import run_cli
    from PIL import Image

    from idinvert.cli import commands

    calls: list[bool] = []
    real_invert = commands.invert

    def recording_invert(*args, **kwargs):
        calls.append(kwargs["compile_step"])
        return real_invert(*args, **{**kwargs, "compile_step": False})  # no compile cost here

    monkeypatch.setattr(commands, "invert", recording_invert)
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(face)
    for flag, out in (([], "plain"), (["--compile"], "compiled")):
        args = ("invert", face, "--model", tiny_model_dir, "--steps", "1", "--out", tmp_path / out)
        res = run_cli(capsys, *args, "--perceptual-weight", "0", *flag)
        assert res.code == 0, res.err
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        assert summary["compiled_step"] is bool(flag)
    assert calls == [False, True]
