"""Tests of set / sequence neighbour aggregation (n3net.ops.sets): reference vs fast, the paper's
properties, candidates, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from n3net.blocks import LogitsBatchNorm, N3Block
from n3net.knn import NeuralKNN, hard_knn, neural_knn
from n3net.ops.sets import (
    sequence_candidates,
    set_aggregate,
    set_aggregate_fast,
    set_aggregate_reference,
)

F64 = torch.float64
MODES = ["all", "mask", "index"]


def _inputs(b: int, n: int, e: int = 4, v: int = 3, dtype: torch.dtype = F64) -> dict[str, Tensor]:
    # Embedding scale 0.3 keeps squared distances O(1): no softmax weight rounds to exactly 1,
    # where the continuous KNN is ill-conditioned (log(1 - w) = -inf).
    return {
        "embedding": (0.3 * torch.randn(b, n, e, dtype=dtype)).requires_grad_(),
        "values": torch.randn(b, n, v, dtype=dtype).requires_grad_(),
        "temperature": (0.5 + torch.rand(b, n, dtype=dtype)).requires_grad_(),
    }


def _candidates(mode: str, b: int, n: int, k: int) -> dict[str, Tensor]:
    """Candidate arguments of one mode; every query keeps at least k + 1 valid candidates."""
    g = torch.Generator().manual_seed(1)
    if mode == "all":
        return {}
    if mode == "mask":
        mask = torch.rand(b, n, n, generator=g) < 0.6
        keep = torch.randperm(n, generator=g)[: k + 2]  # every query may use these items
        mask[:, :, keep] = True
        return {"mask": mask}
    # Per query: itself (excluded), k + 2 distinct other items, one padding slot.
    others = torch.rand(b, n, n - 1, generator=g).argsort(-1)[..., : k + 2]
    others = (torch.arange(n)[:, None] + 1 + others) % n  # never the query
    query = torch.arange(n).expand(b, n)[..., None]
    padding = torch.full((b, n, 1), -1)
    return {"candidates": torch.cat([query, others, padding], -1)}


def _rule(k: int) -> NeuralKNN:
    return NeuralKNN(k)


def _assert_same(ref: Tensor, out: Tensor, inputs: dict[str, Tensor], atol: float) -> None:
    """Compare outputs and the gradients of every input of both paths."""
    torch.testing.assert_close(out, ref, atol=atol, rtol=0)
    grad_out = torch.randn_like(ref)
    leaves = list(inputs.values())
    g_ref = torch.autograd.grad(ref, leaves, grad_out, retain_graph=True)
    g_out = torch.autograd.grad(out, leaves, grad_out, retain_graph=True)
    for name, a, c in zip(inputs, g_ref, g_out, strict=True):
        torch.testing.assert_close(c, a, atol=atol, rtol=0, msg=f"gradient of {name}")


# --- reference vs fast -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backward", ["autograd", "analytic"])
def test_fast_path_trusts_the_library_rules_to_zero_invalid_candidates(
    mode: str, backward: str
) -> None:
    # The fast path skips re-zeroing invalid weights after a NeuralKNN rule; any other callable
    # gets them zeroed. Both must give the same result and gradients bit for bit.
    b, n, k = 2, 9, 3
    inputs = _inputs(b, n)
    kw = _candidates(mode, b, n, k)
    rule = NeuralKNN(k, backward=backward)

    def opaque(logits: Tensor, t: Tensor | None, valid: Tensor | None) -> Tensor:
        return rule(logits, t, valid)

    trusted = set_aggregate_fast(**inputs, k=k, weight_fn=rule, chunk_size=4, **kw)
    zeroed = set_aggregate_fast(**inputs, k=k, weight_fn=opaque, chunk_size=4, **kw)
    assert torch.equal(trusted, zeroed)
    grad_out = torch.randn_like(trusted)
    leaves = list(inputs.values())
    for a, c in zip(
        torch.autograd.grad(trusted, leaves, grad_out),
        torch.autograd.grad(zeroed, leaves, grad_out),
        strict=True,
    ):
        assert torch.equal(a, c)


@pytest.mark.parametrize("chunk_size", [1, 3, None], ids=["chunk1", "chunk3", "chunkN"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("b,n,k", [(1, 7, 3), (2, 9, 2)], ids=["b1n7k3", "b2n9k2"])
def test_reference_vs_fast(mode: str, chunk_size: int | None, b: int, n: int, k: int) -> None:
    inputs = _inputs(b, n)
    kw = _candidates(mode, b, n, k)
    ref = set_aggregate_reference(**inputs, k=k, weight_fn=_rule(k), **kw)
    fast = set_aggregate_fast(**inputs, k=k, weight_fn=_rule(k), chunk_size=chunk_size, **kw)
    assert fast.shape == (b, n, k, 3)
    _assert_same(ref, fast, inputs, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_reference_vs_fast_float32(mode: str) -> None:
    # float32: squared distances are O(1), so rounding of |q|^2 + |c|^2 - 2 q.c is ~1e-6.
    inputs = _inputs(2, 8, dtype=torch.float32)
    kw = _candidates(mode, 2, 8, 3)
    ref = set_aggregate_reference(**inputs, k=3, weight_fn=_rule(3), **kw)
    fast = set_aggregate_fast(**inputs, k=3, weight_fn=_rule(3), chunk_size=3, **kw)
    _assert_same(ref, fast, inputs, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_batchnorm_statistics_chunked(mode: str) -> None:
    b, n, k = 2, 8, 3
    inputs = _inputs(b, n)
    kw = _candidates(mode, b, n, k)
    bn_ref, bn_fast = LogitsBatchNorm().double(), LogitsBatchNorm().double()
    with torch.no_grad():
        for bn in (bn_ref, bn_fast):
            bn.weight.fill_(1.3)
            bn.bias.fill_(-0.2)
    ref = set_aggregate_reference(**inputs, k=k, weight_fn=_rule(k), logits_fn=bn_ref, **kw)
    fast = set_aggregate_fast(
        **inputs, k=k, weight_fn=_rule(k), logits_fn=bn_fast, chunk_size=3, **kw
    )
    _assert_same(ref, fast, inputs, atol=1e-10)
    torch.testing.assert_close(bn_fast.running_mean, bn_ref.running_mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(bn_fast.running_var, bn_ref.running_var, atol=1e-12, rtol=0)
    assert bn_fast.running_mean.item() != 0.0  # statistics were taken


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode: str) -> None:
    b, n, k = 1, 5, 2
    inputs = _inputs(b, n, e=3, v=2)
    kw = _candidates(mode, b, n, k)

    def fn(embedding: Tensor, values: Tensor, temperature: Tensor) -> Tensor:
        return set_aggregate(
            embedding, values, k, _rule(k), temperature=temperature, chunk_size=2, **kw
        )

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), fast_mode=True)


@pytest.mark.parametrize("mode", MODES)
def test_module_reference_vs_fast_with_batchnorm(mode: str) -> None:
    torch.manual_seed(2)
    kw = _candidates(mode, 2, 9, 3)
    # temperature_scale 1: BN-normalised logits over t ~ 1 keep every weight well below 1.
    opts = {"k": 3, "logits_batchnorm": True, "temperature_scale": 1.0}
    ref = N3Block(4, impl="reference", **opts).double()
    fast = N3Block(4, chunk_size=2, **opts).double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 4, dtype=F64)
    out_fast, out_ref = fast(x, **kw), ref(x, **kw)  # one training step each: same BN updates
    torch.testing.assert_close(out_fast, out_ref, atol=1e-10, rtol=0)
    grad_out = torch.randn_like(out_ref)
    out_fast.backward(grad_out)
    out_ref.backward(grad_out)
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0, msg=name)
    ref.eval()
    fast.eval()
    torch.testing.assert_close(fast(x, **kw), ref(x, **kw), atol=1e-10, rtol=0)


# --- properties from the paper ---------------------------------------------------------------


def _item_weights(embedding: Tensor, k: int, **kw: object) -> Tensor:
    """Weights over items: aggregate the identity matrix, (B, N, K, N)."""
    b, n = embedding.shape[:2]
    eye = torch.eye(n, dtype=embedding.dtype).expand(b, n, n)
    return set_aggregate(embedding, eye, k, _rule(k), **kw)


def _listed(index: Tensor, n: int) -> Tensor:
    """(B, N, N) bool: item c is listed among query i's candidates (padding -1 ignored)."""
    slots = index.masked_fill(index < 0, n)  # padding -> a dummy column, dropped below
    listed = torch.zeros(*index.shape[:2], n + 1, dtype=torch.bool)
    return listed.scatter_(2, slots, True)[..., :n]


@pytest.mark.parametrize("mode", MODES)
def test_weights_respect_candidates(mode: str) -> None:
    b, n, k = 2, 9, 3
    emb = _inputs(b, n)["embedding"].detach()
    kw = _candidates(mode, b, n, k)
    w = _item_weights(emb, k, chunk_size=4, **kw)
    allowed = torch.ones(b, n, n, dtype=torch.bool)
    if mode == "mask":
        allowed = kw["mask"].clone()
    elif mode == "index":
        allowed = _listed(kw["candidates"], n)
    allowed &= ~torch.eye(n, dtype=torch.bool)  # self excluded
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(b, n, k, dtype=F64))
    assert (w.masked_select(~allowed[:, :, None, :]) == 0).all()
    assert (w.diagonal(dim1=1, dim2=3) == 0).all()


def test_exclude_self_false_picks_self_first() -> None:
    emb = _inputs(1, 6)["embedding"].detach()
    w = _item_weights(emb, 2, temperature=1e-8, exclude_self=False)
    torch.testing.assert_close(w[0, :, 0], torch.eye(6, dtype=F64))


@pytest.mark.parametrize("mode", MODES)
def test_small_temperature_is_hard_knn(mode: str) -> None:
    b, n, k = 2, 8, 3
    emb = _inputs(b, n)["embedding"].detach()
    kw = _candidates(mode, b, n, k)
    w = _item_weights(emb, k, temperature=1e-9, **kw)
    dist = ((emb[:, :, None] - emb[:, None]) ** 2).sum(-1)  # (B, N, N)
    allowed = ~torch.eye(n, dtype=torch.bool).expand(b, n, n)
    if mode == "mask":
        allowed = allowed & kw["mask"]
    elif mode == "index":
        allowed = allowed & _listed(kw["candidates"], n)
    expected = hard_knn(-dist, k, mask=allowed)
    torch.testing.assert_close(w, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("mode", ["all", "mask"])
def test_k1_is_softmax_attention(mode: str) -> None:
    b, n = 2, 7
    inputs = _inputs(b, n)
    emb, values, t = (x.detach() for x in inputs.values())
    kw = _candidates(mode, b, n, 1)
    out = set_aggregate(emb, values, 1, _rule(1), temperature=t, chunk_size=3, **kw)
    logits = -(torch.cdist(emb, emb) ** 2) / t[..., None]
    allowed = ~torch.eye(n, dtype=torch.bool)
    if mode == "mask":
        allowed = allowed & kw["mask"]
    attention = torch.softmax(logits.masked_fill(~allowed, -math.inf), -1)
    torch.testing.assert_close(out[:, :, 0], attention @ values, atol=1e-10, rtol=0)


def test_permutation_equivariance() -> None:
    block = N3Block(5, k=3, embed_features=16).double().eval()
    x = torch.randn(2, 11, 5, dtype=F64)
    perm = torch.randperm(11)
    torch.testing.assert_close(block(x[:, perm]), block(x)[:, perm], atol=1e-10, rtol=0)


def test_sequence_candidates() -> None:
    c = sequence_candidates(5, 2)
    assert c.shape == (5, 4)
    assert c[0].tolist() == [-1, -1, 1, 2]
    assert c[2].tolist() == [0, 1, 3, 4]


def test_candidates_broadcast_over_batch() -> None:
    inputs = {k: v.detach() for k, v in _inputs(2, 7).items()}
    index = _candidates("index", 1, 7, 2)["candidates"][0]  # (N, M)
    a = set_aggregate(**inputs, k=2, weight_fn=_rule(2), candidates=index)
    c = set_aggregate(**inputs, k=2, weight_fn=_rule(2), candidates=index.expand(2, -1, -1))
    torch.testing.assert_close(a, c)
    mask = _candidates("mask", 1, 7, 2)["mask"][0]  # (N, N)
    a = set_aggregate(**inputs, k=2, weight_fn=_rule(2), mask=mask)
    c = set_aggregate(**inputs, k=2, weight_fn=_rule(2), mask=mask.expand(2, -1, -1))
    torch.testing.assert_close(a, c)


def test_large_set_chunked_runs() -> None:
    # N = 4096 items, all pairs: an (N, N, C) tensor would be 4096^2 * 8 floats (512 MiB); the
    # chunked path only ever sees (B, 256, N) logits.
    n, chunk = 4096, 256
    seen: list[tuple[int, ...]] = []

    def rule(logits: Tensor, t: Tensor | None, mask: Tensor | None) -> Tensor:
        seen.append(tuple(logits.shape))
        return neural_knn(logits, 2, t, mask)

    with torch.no_grad():
        out = set_aggregate(torch.randn(1, n, 8), torch.randn(1, n, 8), 2, rule, chunk_size=chunk)
    assert out.shape == (1, n, 2, 8)
    assert torch.isfinite(out).all()
    assert max(seen) == (1, chunk, n) and len(seen) == n // chunk


# --- errors ----------------------------------------------------------------------------------


def _call(**overrides: object) -> Tensor:
    kw: dict[str, object] = {
        "embedding": torch.randn(2, 5, 3),
        "values": torch.randn(2, 5, 4),
        "k": 2,
        "weight_fn": _rule(2),
    }
    kw.update(overrides)
    return set_aggregate(**kw)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"embedding": torch.randn(5, 3)}, "embedding must be"),
        ({"values": torch.randn(2, 4, 4)}, "values must be"),
        ({"values": torch.randn(2, 5)}, "values must be"),
        ({"k": 5}, r"k must be <= .* got k=5 > 4"),
        ({"k": 0}, "k must be a positive integer"),
        ({"candidates": torch.tensor([[1, 2]] * 5)}, r"k must be <= .* got k=2 > 1"),
        ({"candidates": torch.full((5, 2), 5)}, r"candidates must be item indices"),
        ({"candidates": torch.full((5, 2), -2)}, r"candidates must be item indices"),
        ({"candidates": torch.zeros(5, 2)}, "candidates must be an integer tensor"),
        ({"candidates": torch.zeros(2, 4, 2, dtype=torch.long)}, "candidates must be"),
        ({"mask": torch.ones(5, 4, dtype=torch.bool)}, "mask must be"),
        ({"mask": torch.ones(5, 5)}, "mask must be a bool tensor"),
        (
            {"mask": torch.eye(5, dtype=torch.bool) | torch.eye(5, dtype=torch.bool).roll(1, 0)},
            r"k must be <= .* got k=2 > 1",
        ),
        ({"temperature": torch.tensor([1.0, math.nan])[:, None]}, "temperature must not be NaN"),
        ({"temperature": torch.ones(3)}, "temperature must be broadcastable"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"chunk_size": 0}, "chunk_size must be"),
        ({"impl": "cuda"}, "impl must be"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_errors(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _call(**overrides)
