"""CodeAdam against torch.optim.Adam (the official optimiser), and what it saves."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from idinvert.core.adam import CodeAdam


def _run(make_optimizer, start: torch.Tensor, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    z = start.clone().requires_grad_(True)
    optimizer = make_optimizer(z)
    trajectory = []
    for grad in grads:
        optimizer.zero_grad()
        # a loss whose gradient is exactly `grad`, through autograd as in the inversion loop
        (z * grad).sum().backward()
        optimizer.step()
        trajectory.append(z.detach().clone())
    return trajectory


@pytest.mark.parametrize(
    ("lr", "betas", "eps"),
    [(0.01, (0.9, 0.999), 1e-8), (0.3, (0.5, 0.9), 1e-3), (1e-4, (0.0, 0.0), 1e-8)],
)
def test_every_step_is_bit_identical_to_torch_adam(lr, betas, eps):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(2, 14, 512, generator=gen)
    # gradients over six orders of magnitude, sign changes, exact zeros
    grads = []
    for k in range(200):
        g = torch.randn(2, 14, 512, generator=gen) * 10.0 ** (k % 7 - 4)
        g[:, k % 14] = 0.0
        grads.append(g)
    ours = _run(lambda z: CodeAdam(z, lr=lr, betas=betas, eps=eps), start, grads)
    theirs = _run(
        lambda z: torch.optim.Adam([z], lr=lr, betas=betas, eps=eps, foreach=False), start, grads
    )
    assert not torch.equal(ours[-1], start)
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert torch.equal(a, b), f"step {k + 1}: max diff {(a - b).abs().max().item()}"


def test_a_step_without_gradient_changes_nothing():
    z = torch.ones(1, 3, 4, requires_grad=True)
    optimizer = CodeAdam(z, lr=0.1)
    optimizer.step()
    assert torch.equal(z.detach(), torch.ones(1, 3, 4))
    assert optimizer.steps_taken == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr > 0"),
        ({"lr": 0.01, "betas": (0.9, 1.0)}, "betas"),
        ({"lr": 0.01, "eps": 0.0}, "eps > 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CodeAdam(torch.zeros(3, requires_grad=True), **kwargs)


def test_a_tensor_without_gradient_is_refused():
    with pytest.raises(ValueError, match="requires_grad=True"):
        CodeAdam(torch.zeros(3), lr=0.01)


def test_an_inversion_does_not_import_torch_dynamo():
    """torch.optim imports torch._dynamo (1-1.5 s of a fresh process on 2 cores): the
    inversion's optimiser must not pay that."""
    code = textwrap.dedent(
        """
        import sys
        import torch
        from idinvert.hub.api import load_model
        from idinvert.core.inversion import InversionSettings, invert
        bundle = load_model()
        r = bundle.resolution
        images = torch.zeros(1, 3, r, r)
        result = invert(bundle, images, InversionSettings(steps=2))
        assert result.history["total"].shape == (2, 1)
        print("dynamo imported:", "torch._dynamo" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "dynamo imported: False" in out.stdout, out.stdout + out.stderr
