"""frozen_linear: oneDNN's product for batches equals F.linear's; batch 1 is F.linear itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import idinvert.core.models.frozen_linear as frozen_linear_module
from idinvert.core.models.frozen_linear import frozen_linear
from idinvert.core.models.packed_conv import onednn_x86

pytestmark = pytest.mark.skipif(not onednn_x86(), reason="oneDNN on x86-64 only")


def _weights(out_features: int = 96, in_features: int = 512, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, in_features, generator=gen) / in_features**0.5


@pytest.mark.parametrize("rows", [2, 4, 9])
def test_batches_give_f_linear_output_and_input_gradient(rows, monkeypatch):
    calls = []
    real = frozen_linear_module._matmul
    monkeypatch.setattr(frozen_linear_module, "_matmul", lambda *a: calls.append(1) or real(*a))
    w = _weights()
    x = torch.randn(rows, 512)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = frozen_linear(xa, w), F.linear(xb, w)
    dy = torch.randn(rows, 96)
    ya.backward(dy)
    yb.backward(dy)
    assert len(calls) == 2  # forward and input gradient through oneDNN
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(frozen_linear(x, w), yb.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["batch of one", "weight learns", "bfloat16", "1-D input"])
def test_other_products_are_f_linear_exactly(case, monkeypatch):
    monkeypatch.setattr(frozen_linear_module, "_matmul", lambda *a: pytest.fail("oneDNN used"))
    w, x = _weights(), torch.randn(3, 512)
    if case == "batch of one":  # the official arithmetic, bit for bit
        x = x[:1]
    elif case == "weight learns":
        w = w.requires_grad_(True)
    elif case == "bfloat16":
        w, x = w.bfloat16(), x.bfloat16()
    else:
        x = x[0]
    y = frozen_linear(x, w)
    assert torch.equal(y, F.linear(x, w))
    if case == "weight learns":
        y.sum().backward()
        assert w.grad is not None
