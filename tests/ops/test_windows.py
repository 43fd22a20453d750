"""Tests for n3net.ops.windows: search windows, and the fast path against the reference.

Numerics of the comparisons: the continuous KNN is ill-conditioned when a softmax weight rounds to
exactly 1. Then log(1 - w) is -inf, while a weight a rounding error below 1 gives a finite
log(1 - w) ~ log(sum of the other weights), and the next round weights that candidate ~1/2
instead of 0 (see tests/test_knn.py::test_code_mode_splits_round_two_before_saturation). Tiny,
legitimate differences in the logits of the two paths (the fast path uses |a|^2 + |b|^2 - 2<a,b>
instead of sum (a - b)^2) can land on either side, so the paths agree only while the softmaxes
are not that peaked. The tests therefore scale the embeddings so that squared patch distances
are O(1)-O(10) (E|e_i - e_j|^2 = 4) and keep temperatures in [0.5, 1.5].
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import zlib
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from torch import Tensor

from n3net.blocks.n3_image import LogitsBatchNorm
from n3net.knn import hard_knn, neural_knn
from n3net.ops.patches import grid_size, pad_for_patches
from n3net.ops.windows import (
    window_aggregate,
    window_aggregate_fast,
    window_aggregate_reference,
    window_candidates,
    window_starts,
)

# --- search windows -------------------------------------------------------------------------


def test_window_starts_authors_clamp_rule() -> None:
    # 20-cell grid, window 15: start = clamp(i - 7, 0, 20 - 15).
    starts = window_starts(20, 15)
    assert starts[0] == 0 and starts[10] == 3 and starts[19] == 5
    assert starts.tolist() == [min(max(i - 7, 0), 5) for i in range(20)]
    assert window_starts(6, 3).tolist() == [0, 0, 1, 2, 3, 3]
    assert window_starts(9, 15).tolist() == [0] * 9  # grid smaller than the window: whole axis
    assert window_starts(1, 15).tolist() == [0]
    assert window_starts(8, 4).tolist() == [0, 0, 1, 2, 3, 4, 4, 4]  # even window: (4 - 1) // 2


def _candidates_brute_force(n1: int, n2: int, window: int) -> list[list[int]]:
    m1, m2 = min(window, n1), min(window, n2)
    out = []
    for i, j in itertools.product(range(n1), range(n2)):
        r0 = min(max(i - (window - 1) // 2, 0), n1 - m1)
        c0 = min(max(j - (window - 1) // 2, 0), n2 - m2)
        cells = [r * n2 + c for r in range(r0, r0 + m1) for c in range(c0, c0 + m2)]
        out.append([x for x in cells if x != i * n2 + j])
    return out


@pytest.mark.parametrize(
    ("n1", "n2", "window"),
    [(20, 20, 15), (16, 18, 15), (5, 8, 15), (3, 3, 15), (1, 5, 3), (7, 9, 3), (10, 6, 4)],
    ids=["20x20", "83x91px", "grid<window", "3x3", "one-row", "w3", "even-window"],
)
def test_window_candidates(n1: int, n2: int, window: int, device) -> None:
    cand = window_candidates(n1, n2, window, device)
    m = min(window, n1) * min(window, n2) - 1
    assert cand.shape == (n1 * n2, m) and cand.dtype == torch.long
    assert cand.tolist() == _candidates_brute_force(n1, n2, window)
    assert (cand != torch.arange(n1 * n2, device=device)[:, None]).all()  # self excluded


def test_window_candidates_15x15_has_224() -> None:
    assert window_candidates(15, 15, 15).shape == (225, 224)
    assert window_candidates(1, 1, 15).shape == (1, 0)


# --- reference against fast -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One comparison: image size in pixels (padded by the test), geometry and options."""

    height: int
    width: int
    patch_size: int = 10
    stride: int = 5
    window: int = 15
    k: int = 3
    tile: int = 4
    batch: int = 1
    embed_channels: int = 1
    value_channels: int = 2
    rule: str = "continuous"
    temperature: bool = True
    batchnorm: str | None = None  # None, "train" or "eval"
    cells: bool | None = None  # the fast path's cell formulation; None: its default
    rows_per_chunk: int | None = None  # tile rows the fast path processes at once; None: auto


def _weight_fn(case: Case):
    if case.rule == "hard":
        return lambda logits, t, mask: hard_knn(logits, case.k, mask)
    return lambda logits, t, mask: neural_knn(logits, case.k, t, mask)


def _batchnorm(case: Case, dtype: torch.dtype, device) -> LogitsBatchNorm | None:
    if case.batchnorm is None:
        return None
    bn = LogitsBatchNorm().to(device=device, dtype=dtype)
    with torch.no_grad():
        bn.weight.fill_(1.3)
        bn.bias.fill_(-0.2)
        bn.running_mean.fill_(-4.0)  # E|e_i - e_j|^2 = 4
        bn.running_var.fill_(4.0)
    return bn.train(case.batchnorm == "train")


def _inputs(case: Case, dtype: torch.dtype, device) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))  # stable per case
    p, s = case.patch_size, case.stride
    d = case.embed_channels * p * p
    # E|e_i - e_j|^2 = 2 * d * std^2 = 4: distances O(1)-O(10), see the module docstring.
    emb = math.sqrt(2.0 / d) * torch.randn(
        case.batch, case.embed_channels, case.height, case.width, generator=gen
    )
    val = torch.randn(case.batch, case.value_channels, case.height, case.width, generator=gen)
    n1, n2 = grid_size(case.height, p, s), grid_size(case.width, p, s)
    inputs = {
        "embedding": pad_for_patches(emb, p, s),
        "values": pad_for_patches(val, p, s),
    }
    if case.temperature:
        inputs["temperature"] = 0.5 + torch.rand(case.batch, n1, n2, generator=gen)
    return {name: x.to(device=device, dtype=dtype).requires_grad_() for name, x in inputs.items()}


def _run(fn, case: Case, inputs: dict[str, Tensor], bn, cotangent: Tensor | None):
    """Output, gradients of every input (and of the batch norm's parameters), batch norm state."""
    for x in inputs.values():
        x.grad = None
    out = fn(
        inputs["embedding"],
        inputs["values"],
        case.k,
        _weight_fn(case),
        patch_size=case.patch_size,
        stride=case.stride,
        search_window=case.window,
        temperature=inputs.get("temperature"),
        logits_fn=bn,
    )
    if cotangent is None:
        cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)
    tensors = dict(inputs)
    if bn is not None:
        tensors.update(bn_weight=bn.weight, bn_bias=bn.bias)
    grads = torch.autograd.grad(out, list(tensors.values()), cotangent, allow_unused=True)
    grads = {name: g for name, g in zip(tensors, grads, strict=True)}
    state = None if bn is None else (bn.running_mean.clone(), bn.running_var.clone())
    return out.detach(), grads, state, cotangent


def _assert_fast_matches_reference(case: Case, dtype: torch.dtype, device) -> None:
    """Compare outputs, gradients of every input, and batch-norm statistics of the two paths.

    float64: absolute 1e-10. float32: 5e-5 times the largest magnitude of the reference's
    tensor (output or gradient; at least 1), i.e. relative to the values' scale. Observed on CPU:
    up to 6e-7 of it on outputs, 4e-6 on the temperature's gradient, 5e-6 on the batch-norm
    bias's gradient (which is ~0: a constant shift of a query's logits leaves its softmax alone).
    """
    inputs = _inputs(case, dtype, device)
    bn = _batchnorm(case, dtype, device)
    bn_fast = copy.deepcopy(bn)
    ref, ref_grads, ref_state, cot = _run(window_aggregate_reference, case, inputs, bn, None)
    fast_fn = partial(
        window_aggregate_fast, tile=case.tile, cells=case.cells, rows_per_chunk=case.rows_per_chunk
    )
    fast, fast_grads, fast_state, _ = _run(fast_fn, case, inputs, bn_fast, cot)

    n1 = grid_size(case.height, case.patch_size, case.stride)
    n2 = grid_size(case.width, case.patch_size, case.stride)
    padded = inputs["values"].shape[-2:]
    assert ref.shape == fast.shape == (case.batch, case.k, case.value_channels, *padded)
    assert torch.isfinite(ref).all() and n1 * n2 >= 1

    def close(got: Tensor | None, want: Tensor | None, what: str) -> None:
        if want is None:  # e.g. the hard rule: no gradient to the embedding in either path
            assert got is None or (got == 0).all(), what
            return
        assert got is not None, what
        if dtype == torch.float64:
            atol = 1e-10
        else:
            atol = 5e-5 * max(float(want.abs().max()), 1.0)
        torch.testing.assert_close(got, want, atol=atol, rtol=0, msg=lambda m: f"{what}: {m}")

    close(fast, ref, "output")
    for name in ref_grads:
        close(fast_grads[name], ref_grads[name], f"grad {name}")
    if ref_state is not None:
        close(fast_state[0], ref_state[0], "running_mean")
        close(fast_state[1], ref_state[1], "running_var")


CASES = {
    "83x91px-p10s5-w15-k7": Case(83, 91, k=7, value_channels=1),
    "83x91px-patch-engine": Case(83, 91, k=7, value_channels=1, cells=False),
    "30x45px-grid-smaller-than-window": Case(30, 45, k=7),
    "20x20px-grid3x3-k7": Case(20, 20, k=7),
    "20x20px-grid3x3-k8-all-candidates": Case(20, 20, k=8),
    "10x50px-one-grid-row": Case(10, 50, window=5, k=3),
    "batch2-p4s2-27x33px-w5": Case(27, 33, patch_size=4, stride=2, window=5, batch=2),
    "p3s1-13x11px-tile2": Case(13, 11, patch_size=3, stride=1, window=5, k=1, tile=2),
    "p5s3-stride-not-dividing-patch": Case(23, 29, patch_size=5, stride=3, window=5, k=4),
    "p4s4-stride-equals-patch": Case(24, 28, patch_size=4, stride=4, window=3, k=3),
    "p4s2-cells-vs-patches": Case(26, 30, patch_size=4, stride=2, window=5, cells=False),
    "even-window-4": Case(26, 30, patch_size=4, stride=2, window=4, k=5),
    "three-embedding-channels": Case(30, 35, patch_size=4, stride=2, window=5, embed_channels=3),
    "hard-rule": Case(40, 45, window=5, rule="hard"),
    "hard-rule-grid<window": Case(30, 45, k=7, rule="hard"),
    "no-temperature": Case(40, 45, window=5, temperature=False),
    "batchnorm-train": Case(43, 47, window=5, batchnorm="train", batch=2),
    "batchnorm-train-grid<window": Case(30, 45, k=7, batchnorm="train"),
    "batchnorm-train-p4s2-tile2": Case(
        26, 30, patch_size=4, stride=2, window=5, tile=2, batchnorm="train"
    ),
    "batchnorm-eval": Case(43, 47, window=5, batchnorm="eval"),
    # Chunks of tile rows: one row at a time, two (the last chunk shorter), all at once.
    "83x91px-chunk1": Case(83, 91, k=7, value_channels=1, rows_per_chunk=1),
    "83x91px-chunk2": Case(83, 91, k=7, value_channels=1, rows_per_chunk=2),
    "83x91px-chunk-all": Case(83, 91, k=7, value_channels=1, rows_per_chunk=100),
    "83x91px-patch-engine-chunk2": Case(
        83, 91, k=7, value_channels=1, cells=False, rows_per_chunk=2
    ),
    "batchnorm-train-chunk2": Case(43, 47, window=5, batchnorm="train", batch=2, rows_per_chunk=2),
    "p5s3-chunk1": Case(23, 29, patch_size=5, stride=3, window=5, k=4, rows_per_chunk=1),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_fast_matches_reference_float64(case: Case, device) -> None:
    _assert_fast_matches_reference(case, torch.float64, device)


SWEEP = {
    f"tile{tile}-w{window}-k{k}-chunk{chunk}": Case(
        26, 30, patch_size=4, stride=2, window=window, k=k, tile=tile, rows_per_chunk=chunk
    )
    for tile, window, k in itertools.product((1, 2, 4), (3, 5, 15), (1, 3, 7))
    for chunk in ((1, 3) if k == 3 else (None,))
}


@pytest.mark.parametrize("case", list(SWEEP.values()), ids=list(SWEEP))
def test_fast_matches_reference_sweep(case: Case) -> None:
    # 26x30 px, 4 px patches at stride 2: a 12 x 14 grid (14 is not a multiple of tile 4);
    # windows 3 and 5 shift at the borders, window 15 is larger than the grid.
    _assert_fast_matches_reference(case, torch.float64, "cpu")


FLOAT32 = {
    "83x91px-p10s5-w15-k7": CASES["83x91px-p10s5-w15-k7"],
    "batchnorm-train": CASES["batchnorm-train"],
    "batchnorm-eval": CASES["batchnorm-eval"],
    "p4s2-tile2": dataclasses.replace(SWEEP["tile2-w5-k3-chunk1"], batch=2),
}


@pytest.mark.parametrize("case", list(FLOAT32.values()), ids=list(FLOAT32))
def test_fast_matches_reference_float32(case: Case, device) -> None:
    _assert_fast_matches_reference(case, torch.float32, device)


GRADCHECK = {
    # 4 x 5 px, 2 px patches at stride 1: a 3 x 4 grid; window 2 and tile 2 give partial tiles and
    # windows shifted at the border. Full gradcheck (every input element).
    "4x5px-p2s1-w2-cells": (Case(4, 5, patch_size=2, stride=1, window=2, k=2, tile=2), False),
    "4x5px-p2s1-w2-patches": (
        Case(4, 5, patch_size=2, stride=1, window=2, k=2, tile=2, cells=False),
        False,
    ),
    "4x5px-p2s1-w2-cells-chunk1": (
        Case(4, 5, patch_size=2, stride=1, window=2, k=2, tile=2, rows_per_chunk=1),
        False,
    ),
    "4x5px-p2s1-w2-patches-chunk1": (
        Case(4, 5, patch_size=2, stride=1, window=2, k=2, tile=2, cells=False, rows_per_chunk=1),
        False,
    ),
    # 1 x 1 x 20 x 25 px, 10 px patches at stride 5: a 3 x 4 grid, window 3, k 2, tile 2. Fast-mode
    # gradcheck (random projections of the Jacobian): the full one takes ~100 s here.
    "20x25px-p10s5-w3-cells": (Case(20, 25, window=3, k=2, tile=2), True),
    "20x25px-p10s5-w3-patches": (Case(20, 25, window=3, k=2, tile=2, cells=False), True),
}


@pytest.mark.parametrize(("case", "fast_mode"), list(GRADCHECK.values()), ids=list(GRADCHECK))
def test_fast_gradcheck(case: Case, fast_mode: bool) -> None:
    # Temperature and a training-mode logits batch norm included.
    case = dataclasses.replace(case, value_channels=1, batchnorm="train")
    inputs = _inputs(case, torch.float64, "cpu")
    bn = _batchnorm(case, torch.float64, "cpu")

    def fn(embedding: Tensor, values: Tensor, temperature: Tensor) -> Tensor:
        return window_aggregate_fast(
            embedding,
            values,
            case.k,
            _weight_fn(case),
            patch_size=case.patch_size,
            stride=case.stride,
            search_window=case.window,
            temperature=temperature,
            logits_fn=bn,
            tile=case.tile,
            cells=case.cells,
            rows_per_chunk=case.rows_per_chunk,
        )

    args = (inputs["embedding"], inputs["values"], inputs["temperature"])
    assert torch.autograd.gradcheck(fn, args, fast_mode=fast_mode)


# --- shapes, front door, exceptions ---------------------------------------------------------


def _continuous(k: int):
    return lambda logits, t, mask: neural_knn(logits, k, t, mask)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_batch_zero(impl: str) -> None:
    x = torch.randn(0, 2, 20, 25)
    out = window_aggregate(
        x, x, 2, _continuous(2), patch_size=10, stride=5, search_window=3, impl=impl
    )
    assert out.shape == (0, 2, 2, 20, 25)


def test_fast_shape_on_200x200() -> None:
    x = pad_for_patches(torch.randn(1, 8, 200, 200), 10, 5)
    with torch.no_grad():
        out = window_aggregate_fast(
            0.05 * x, x, 7, _continuous(7), patch_size=10, stride=5, search_window=15
        )
    assert x.shape == (1, 8, 200, 200)  # 200 = 10 + 38 * 5: no padding
    assert out.shape == (1, 7, 8, 200, 200) and torch.isfinite(out).all()


def test_front_door_dispatch() -> None:
    case = Case(30, 35, patch_size=4, stride=2, window=5)
    inputs = {n: x.detach() for n, x in _inputs(case, torch.float64, "cpu").items()}
    kwargs = dict(patch_size=4, stride=2, search_window=5, temperature=inputs["temperature"])
    args = (inputs["embedding"], inputs["values"], 3, _continuous(3))
    ref = window_aggregate_reference(*args, **kwargs)
    torch.testing.assert_close(window_aggregate(*args, **kwargs, impl="reference"), ref)
    torch.testing.assert_close(window_aggregate(*args, **kwargs, impl="auto"), ref)
    torch.testing.assert_close(window_aggregate(*args, **kwargs, impl="fast"), ref)
    with pytest.raises(ValueError, match="impl"):
        window_aggregate(*args, **kwargs, impl="dense")


def test_identical_patches_average_to_themselves() -> None:
    # A constant embedding makes every candidate equally near: each neighbour volume of a
    # constant value image is that constant (weights sum to 1, overlaps are averaged).
    emb = torch.zeros(1, 1, 30, 35, dtype=torch.float64)
    val = torch.full((1, 2, 30, 35), 3.0, dtype=torch.float64)
    for impl in ("reference", "fast"):
        out = window_aggregate(
            emb, val, 3, _continuous(3), patch_size=5, stride=5, search_window=3, impl=impl
        )
        torch.testing.assert_close(out, torch.full_like(out, 3.0))


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize(
    ("size", "kwargs", "match"),
    [
        ((20, 20), dict(k=9), "k"),  # 3 x 3 grid: 8 candidates
        ((10, 10), dict(k=1), "k=1"),  # 1 x 1 grid: no candidate
        ((21, 20), dict(k=1), "pad"),  # not tiled exactly
        ((20, 20), dict(k=1, stride=11), "stride"),
        ((20, 20), dict(k=1, patch_size=0), "patch_size"),
        ((20, 20), dict(k=1, search_window=0), "search_window"),
        ((20, 20), dict(k=1, temperature=torch.full((1, 3, 3), math.nan)), "temperature"),
    ],
    ids=["k>candidates", "1x1-grid", "unpadded", "stride>patch", "patch0", "window0", "nan-temp"],
)
def test_exceptions(impl: str, size: tuple[int, int], kwargs: dict, match: str) -> None:
    kwargs = dict(kwargs)
    k = kwargs.pop("k")
    geometry = dict(patch_size=10, stride=5, search_window=15)
    geometry.update(kwargs)
    x = torch.randn(1, 1, *size)
    with pytest.raises(ValueError, match=match):
        window_aggregate(x, x, k, _continuous(k), **geometry, impl=impl)


def test_exceptions_shapes() -> None:
    x = torch.randn(1, 1, 20, 20)
    geometry = dict(patch_size=10, stride=5, search_window=15)
    with pytest.raises(ValueError, match="embedding"):
        window_aggregate(x[0], x, 1, _continuous(1), **geometry)
    with pytest.raises(ValueError, match="values"):
        window_aggregate(x, torch.randn(2, 1, 20, 20), 1, _continuous(1), **geometry)
    with pytest.raises(ValueError, match="values"):
        window_aggregate(x, torch.randn(1, 1, 20, 25), 1, _continuous(1), **geometry)
    with pytest.raises(ValueError, match="tile"):
        window_aggregate_fast(x, x, 1, _continuous(1), **geometry, tile=0)
    with pytest.raises(ValueError, match="rows_per_chunk"):
        window_aggregate_fast(x, x, 1, _continuous(1), **geometry, rows_per_chunk=0)


def test_rows_per_chunk_budget() -> None:
    from n3net.ops._tiling import _rows_per_chunk

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # 1024 x 1024, batch 1: 52 rows of 52 tiles x 16 queries x 7 rounds x 324 candidates.
    per_row = 52 * 16 * 7 * 324
    assert _rows_per_chunk(per_row, cpu, 52) == 1
    assert _rows_per_chunk(per_row, cuda, 52) == 4
    assert _rows_per_chunk(10, cuda, 3) == 3  # never more rows than there are
    assert _rows_per_chunk(1 << 30, cuda, 3) == 1  # a row over the budget still goes alone


@pytest.mark.parametrize("index_shape", [(5,), (3, 4), (2, 3, 2)])
def test_take_equals_advanced_indexing(index_shape: tuple[int, ...]) -> None:
    from n3net.ops._engines import _take

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    index = torch.randint(0, 7, index_shape, generator=g)  # repeats, as tiles share candidates
    got, want = _take(x, index), x[:, index]
    assert got.shape == want.shape == (2, *index_shape, 3)
    assert torch.equal(got, want)
    grad = torch.randn(want.shape, dtype=torch.float64, generator=g)
    (g_take,) = torch.autograd.grad(got, x, grad)
    (g_index,) = torch.autograd.grad(want, x, grad)
    torch.testing.assert_close(g_take, g_index, rtol=1e-12, atol=1e-12)
    assert torch.equal(_take(x[..., 0], index), x[:, index, 0])  # 2-D input, (B, N)


def _spread_naive(w: Tensor, m: int) -> Tensor:
    *lead, qr, qc, ur, uc = w.shape
    out = w.new_zeros(*lead, qr + m - 1, qc + m - 1, ur + m - 1, uc + m - 1)
    for dy, dx in itertools.product(range(m), repeat=2):
        out = out + torch.nn.functional.pad(w, (dx, m - 1 - dx, dy, m - 1 - dy) * 2)
    return out


@pytest.mark.parametrize("m", [1, 2, 3])
def test_diagonal_spread_and_sum_are_adjoint(m: int) -> None:
    from n3net.ops._engines import _SpreadDiagonals, _SumDiagonals

    g = torch.Generator().manual_seed(m)
    w = torch.randn(2, 3, 2, 4, 3, 2, dtype=torch.float64, generator=g)  # (.., qr, qc, ur, uc)
    big = torch.randn(2, 3, 1 + m, 3 + m, 2 + m, 1 + m, dtype=torch.float64, generator=g)
    spread = _SpreadDiagonals.apply(w, m)
    torch.testing.assert_close(spread, _spread_naive(w, m), rtol=1e-12, atol=1e-12)
    # <spread(w), big> == <w, sum(big)>: the two maps are each other's transpose.
    lhs = (spread * big).sum()
    rhs = (w * _SumDiagonals.apply(big, m)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    # A transposed view in (the aggregation passes a permuted tensor) gives the same result.
    wt = w.transpose(0, 1).contiguous().transpose(0, 1)
    torch.testing.assert_close(_SpreadDiagonals.apply(wt, m), spread, rtol=0, atol=0)
    w.requires_grad_(True)
    big.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: _SpreadDiagonals.apply(x, m), (w,))
    assert torch.autograd.gradcheck(lambda x: _SumDiagonals.apply(x, m), (big,))
    assert torch.autograd.gradgradcheck(lambda x: _SpreadDiagonals.apply(x, m) ** 2, (w,))
