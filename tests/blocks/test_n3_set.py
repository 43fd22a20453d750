"""Tests of the set / sequence N3 block (n3net.blocks.n3_set)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from n3net.blocks import N3Block
from n3net.knn import NeuralKNN
from n3net.ops.sets import (
    sequence_candidates,
    set_aggregate_reference,
)

F64 = torch.float64


# --- the module ------------------------------------------------------------------------------


@pytest.mark.parametrize("b", [0, 1, 2])
@pytest.mark.parametrize("n,k", [(2, 1), (5, 3), (13, 7)])
def test_module_shapes(b: int, n: int, k: int) -> None:
    block = N3Block(6, k=k)
    out = block(torch.randn(b, n, 6))
    assert out.shape == (b, n, 6 * (k + 1))
    assert torch.isfinite(out).all()


def test_module_values_and_sequences() -> None:
    block = N3Block(4, k=2, output="residual")
    x, y = torch.randn(3, 10, 4), torch.randn(3, 10, 5)
    cands = sequence_candidates(10, radius=2)  # (N, 4), -1 at the ends
    out = block(x, candidates=cands, values=y)
    assert out.shape == (3, 10, 5 * 3)
    torch.testing.assert_close(out[..., :5], y)


def test_module_residual_output() -> None:
    torch.manual_seed(3)
    concat = N3Block(4, k=3, output="concat")
    residual = N3Block(4, k=3, output="residual")
    residual.load_state_dict(concat.state_dict())
    x = torch.randn(2, 8, 4)
    a, r = concat(x), residual(x)
    torch.testing.assert_close(r[..., :4], x)
    torch.testing.assert_close(r[..., 4:], a[..., 4:] - x.repeat(1, 1, 3))


def test_module_equals_functional() -> None:
    block = N3Block(4, k=2, embedding=nn.Identity(), learn_temperature=False, temperature=0.7)
    x = torch.randn(2, 6, 4, dtype=F64)
    expected = set_aggregate_reference(x, x, 2, NeuralKNN(2), temperature=0.7)
    torch.testing.assert_close(block.double()(x)[..., 4:], expected.flatten(2))


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_module_analytic_backward_matches_autograd(mode: str) -> None:
    torch.manual_seed(4)
    blocks = [N3Block(4, k=3, mode=mode).double() for _ in range(2)]
    blocks[1].load_state_dict(blocks[0].state_dict())
    assert blocks[0].knn.backward == ("analytic" if mode == "code" else "autograd")
    blocks[1].knn.backward = "autograd"
    x = torch.randn(2, 9, 4, dtype=F64)
    mask = torch.rand(2, 9, 9) > 0.3
    mask[..., :4] = True
    for block in blocks:
        block(x, mask=mask).square().sum().backward()
    for (name, a), b in zip(blocks[0].named_parameters(), blocks[1].parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-9, msg=name)


def test_module_errors() -> None:
    with pytest.raises(ValueError, match="x must be"):
        N3Block(4, k=2)(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="output must be"):
        N3Block(4, output="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature must be"):
        N3Block(4, learn_temperature=False, temperature=math.nan)
    with pytest.raises(ValueError, match="chunk_size must be"):
        N3Block(4, chunk_size=-1)
    with pytest.raises(ValueError, match=r"k must be <= .* got k=7 > 4"):
        N3Block(4)(torch.randn(1, 5, 4))
