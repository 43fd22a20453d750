"""Nearest-neighbour aggregation of image patches inside a local search window.

Axis legend: ``B`` batch, ``L`` patches per image (``n1 * n2`` grid), ``M`` candidates per query,
``K`` neighbours, ``D`` patch-vector length of the matched tensor (embedding), ``V`` patch-vector
length of the aggregated tensor, ``Q`` queries per tile, ``U`` candidates per tile.

The candidates of the patch at grid position ``(i, j)`` are the ``m1 x m2`` window of grid
positions starting at ``(clamp(i - (w - 1) // 2, 0, n1 - m1), clamp(j - ..., 0, n2 - m2))`` with
``m = min(w, n)`` per axis, minus the query itself: the window is shifted inward at the borders
(the authors' rule for ``n >= w``; the whole axis when the grid is smaller than the window).

Two implementations of :func:`window_aggregate` agree to rounding:

* ``reference`` gathers every candidate's patch vector, ``(B, L, M, D)``: short and obviously
  correct, memory ``O(L * M * D)``.
* ``fast`` groups queries into tiles of ``tile x tile`` grid positions. All queries of a tile
  draw their candidates from the tile's union window (``U <= (tile + w - 1) ** 2``), so distances
  are one batched matrix product ``(Q, D) x (D, U)`` per tile, and aggregation another,
  ``(Q * K, U) x (U, V)``; candidates outside a query's own window are masked. Tiles are processed
  one row of tiles at a time and folded into the output straight away, so memory grows linearly
  in the number of pixels with a small constant and the ``(L, M, D)`` tensor never exists.
  When ``patch_size`` is a multiple of ``stride`` (the paper's 10 / 5), both products run on
  ``stride x stride`` cells instead of whole patches (``_CellEngine``): a patch dot product is the
  sum of ``m * m`` cell dot products on a diagonal of the cell Gram matrix, and the fold of the
  aggregated patches is one product of summed cell weights with the candidates' cells, about
  ``m * m`` times less arithmetic (``shared/facts/n3_block_cost.md``). The tiling plan (indices
  and masks) depends only on the geometry and is cached.

The continuous KNN is ill-conditioned where a softmax weight rounds to exactly 1 (``log(1 - w)``
is then ``-inf``, and a rounding difference in the logits can make it finite): the two paths
compute the distances differently (direct differences against ``|a|^2 + |b|^2 - 2<a, b>``), so
for very peaked softmaxes they may differ by more than rounding. They agree closely otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from n3net.ops.patches import extract_patches, overlap_count

__all__ = [
    "WeightFn",
    "window_aggregate",
    "window_aggregate_fast",
    "window_aggregate_reference",
    "window_candidates",
    "window_starts",
]

Impl = Literal["auto", "reference", "fast"]
# (logits (..., M), temperature (..., 1) or None, mask (..., M) or None) -> weights (..., K, M)
WeightFn = Callable[[Tensor, Tensor | None, Tensor | None], Tensor]


def window_starts(n: int, window: int, device: torch.device | None = None) -> Tensor:
    """First grid index of each query's search window along one axis.

    Example:
        >>> window_starts(6, 3).tolist()
        [0, 0, 1, 2, 3, 3]
    """
    m = min(window, n)
    i = torch.arange(n, device=device)
    return (i - (window - 1) // 2).clamp(0, n - m)


def window_candidates(n1: int, n2: int, window: int, device: torch.device | None = None) -> Tensor:
    """Flat grid indices of every query's candidates (its window minus itself).

    Shape:
        -> (L, M) long, ``L = n1 * n2``, ``M = min(w, n1) * min(w, n2) - 1``, each row ascending.
    """
    m1, m2 = min(window, n1), min(window, n2)
    rows = window_starts(n1, window, device)[:, None] + torch.arange(m1, device=device)  # (n1, m1)
    cols = window_starts(n2, window, device)[:, None] + torch.arange(m2, device=device)  # (n2, m2)
    cand = rows[:, None, :, None] * n2 + cols[None, :, None, :]  # (n1, n2, m1, m2)
    cand = cand.reshape(n1 * n2, m1 * m2)
    query = torch.arange(n1 * n2, device=device)[:, None]
    keep = cand != query
    return cand[keep].reshape(n1 * n2, m1 * m2 - 1)


def _check(
    embedding: Tensor, values: Tensor, k: int, patch_size: int, stride: int, window: int
) -> tuple[int, int]:
    if embedding.dim() != 4 or values.dim() != 4:
        raise ValueError(
            f"embedding and values must be (B, C, H, W), got {tuple(embedding.shape)} and "
            f"{tuple(values.shape)}"
        )
    if embedding.shape[0] != values.shape[0] or embedding.shape[-2:] != values.shape[-2:]:
        raise ValueError(
            f"embedding {tuple(embedding.shape)} and values {tuple(values.shape)} must share "
            "batch and spatial size"
        )
    for name, v in (("patch_size", patch_size), ("stride", stride), ("search_window", window)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if stride > patch_size:
        raise ValueError(f"stride must be <= patch_size, got {stride} > {patch_size}")
    h, w = embedding.shape[-2:]
    n1 = (h - patch_size) // stride + 1 if h >= patch_size else 0
    n2 = (w - patch_size) // stride + 1 if w >= patch_size else 0
    if n1 < 1 or n2 < 1 or (h - patch_size) % stride or (w - patch_size) % stride:
        raise ValueError(
            f"padded image {h}x{w} is not tiled exactly by {patch_size}px patches at stride "
            f"{stride}; pad it with n3net.ops.patches.pad_for_patches"
        )
    m = min(window, n1) * min(window, n2) - 1
    if k > m:
        raise ValueError(
            f"k must be <= the number of candidate patches, got k={k} > {m} (a {h}x{w} padded "
            f"image has a {n1}x{n2} patch grid; the image is too small for k={k})"
        )
    return n1, n2


def _temperature_per_query(temperature: Tensor | None, b: int, n_patches: int) -> Tensor | None:
    if temperature is None:
        return None
    t = temperature.reshape(b, n_patches, 1)
    if t.device.type == "cpu" and torch.isnan(t).any():  # no device sync on accelerators
        raise ValueError("temperature must not be NaN")
    return t


def window_aggregate_reference(
    embedding: Tensor,
    values: Tensor,
    k: int,
    weight_fn: WeightFn,
    *,
    patch_size: int,
    stride: int,
    search_window: int,
    temperature: Tensor | None = None,
    logits_fn: Callable[[Tensor, Tensor | None], Tensor] | None = None,
) -> Tensor:
    """Neighbour volumes of every patch by explicit gathering (the reference implementation).

    For each query patch: logits = minus the squared Euclidean distance between embedding patch
    vectors and each candidate's; ``logits_fn`` (e.g. a batch norm) transforms them; they are
    divided by the query's temperature; ``weight_fn`` turns them into ``K`` weight rows; neighbour
    ``j`` is the weighted sum of the candidates' ``values`` patches; the patches are folded back,
    averaging overlaps (paper §4, Eqs. 8-11 inside).

    Args:
        embedding: padded embedding ``E`` to match on.
        values: padded tensor ``Y`` to aggregate.
        k: neighbours.
        weight_fn: selection rule, ``(logits, temperature, mask) -> weights``.
        patch_size, stride, search_window: patch geometry (window in grid cells).
        temperature: per-patch temperature ``(B, n1, n2)`` or None.
        logits_fn: ``(logits, mask) -> logits`` (e.g. a batch norm), applied before the rule.

    Shape:
        embedding: (B, C_E, H, W), values: (B, C_Y, H, W) -> (B, K, C_Y, H, W).
    """
    n1, n2 = _check(embedding, values, k, patch_size, stride, search_window)
    b, cy = values.shape[:2]
    if b == 0:
        return values.new_zeros(0, k, *values.shape[1:])
    cand = window_candidates(n1, n2, search_window, embedding.device)  # (L, M)
    e = extract_patches(embedding, patch_size, stride)  # (B, L, D)
    y = extract_patches(values, patch_size, stride)  # (B, L, V)
    logits = -((e[:, :, None, :] - e[:, cand]) ** 2).sum(-1)  # (B, L, M)
    if logits_fn is not None:
        logits = logits_fn(logits, None)
    t = _temperature_per_query(temperature, b, n1 * n2)
    w = weight_fn(logits, t, None)  # (B, L, K, M)
    agg = torch.einsum("blkm,blmv->blkv", w, y[:, cand])  # (B, L, K, V)
    agg = agg.permute(0, 2, 1, 3).reshape(b * k, n1 * n2, -1)  # (B*K, L, V)
    size = tuple(values.shape[-2:])
    folded = F.fold(agg.transpose(1, 2), size, patch_size, stride=stride)
    folded = folded / overlap_count(size, patch_size, stride, folded)
    return folded.reshape(b, k, cy, *size)


@dataclass(frozen=True)
class _AxisTiles:
    """Tiling of one grid axis: query slots and union-window slots per tile (padded).

    A slot holding ``n`` (patches) or ``n + m - 1`` (cells) is a dummy: padding to equal sizes.
    """

    query: Tensor  # (T, q) patch index of each query slot
    union: Tensor  # (T, u) patch index of each union-window slot
    inside: Tensor  # (T, q, u) bool: union slot inside the query's window
    query_cells: Tensor  # (T, q + m - 1) cell index of the cells the tile's queries cover
    union_cells: Tensor  # (T, u + m - 1) cell index of the cells the union's patches cover
    count: list[int]  # real queries per tile
    n: int  # patch-grid size of the axis
    cells: int  # cell-grid size of the axis, n + m - 1


def _axis_tiles(n: int, window: int, tile: int, m: int, device: torch.device) -> _AxisTiles:
    w = min(window, n)
    if n <= window:
        tile = n  # every query's window is the whole axis: one tile is exact and dense
    starts = window_starts(n, window)
    tiles = [(a, min(a + tile, n)) for a in range(0, n, tile)]
    unions = [(int(starts[a]), int(starts[b - 1]) + w) for a, b in tiles]
    u = max(hi - lo for lo, hi in unions)
    cells = n + m - 1
    query = torch.full((len(tiles), tile), n, dtype=torch.long)
    union = torch.full((len(tiles), u), n, dtype=torch.long)
    query_cells = torch.full((len(tiles), tile + m - 1), cells, dtype=torch.long)
    union_cells = torch.full((len(tiles), u + m - 1), cells, dtype=torch.long)
    inside = torch.zeros(len(tiles), tile, u, dtype=torch.bool)
    for t, ((a, b), (lo, hi)) in enumerate(zip(tiles, unions, strict=True)):
        query[t, : b - a] = torch.arange(a, b)
        union[t, : hi - lo] = torch.arange(lo, hi)
        query_cells[t, : b - a + m - 1] = torch.arange(a, b + m - 1)
        union_cells[t, : hi - lo + m - 1] = torch.arange(lo, hi + m - 1)
        s = starts[a:b, None]  # (q, 1)
        slots = union[t, None, : hi - lo]
        inside[t, : b - a, : hi - lo] = (slots >= s) & (slots < s + w)
    return _AxisTiles(
        *(x.to(device) for x in (query, union, inside, query_cells, union_cells)),
        count=[b - a for a, b in tiles],
        n=n,
        cells=cells,
    )


def _tile_row_mask(rows: _AxisTiles, cols: _AxisTiles, r: int) -> tuple[Tensor, Tensor]:
    """Valid (query, candidate) pairs of every tile in tile-row ``r``.

    A pair is valid when the candidate lies in the query's window and is not the query. The
    second mask also lets padded (dummy) queries see every real candidate, so their rows of
    weights stay finite; their results are discarded.

    Shape:
        -> valid (TC, Q, U) bool, for_weights (TC, Q, U) bool; ``Q = qr * qc``, ``U = ur * uc``.
    """
    rq, ru = rows.query[r], rows.union[r]  # (qr,), (ur,)
    inside = rows.inside[r][None, :, None, :, None] & cols.inside[:, None, :, None, :]
    same_row = rq[:, None] == ru[None, :]  # (qr, ur)
    same_col = cols.query[:, :, None] == cols.union[:, None, :]  # (TC, qc, uc)
    itself = same_row[None, :, None, :, None] & same_col[:, None, :, None, :]
    valid = inside & ~itself  # (TC, qr, qc, ur, uc)
    dummy_r = (rq >= rows.n)[None, :, None, None, None]
    dummy = dummy_r | (cols.query >= cols.n)[:, None, :, None, None]
    real = (ru < rows.n)[None, None, None, :, None] & (cols.union < cols.n)[:, None, None, None, :]
    tc, qr, qc, ur, uc = valid.shape
    for_weights = torch.where(dummy, real, valid)
    return valid.reshape(tc, qr * qc, ur * uc), for_weights.reshape(tc, qr * qc, ur * uc)


def _flat(r_idx: Tensor, c_idx: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """Row slots (a,) x column slots (TC, c) -> flat index (TC, a * c); dummy -> n_rows * n_cols."""
    idx = r_idx[:, None] * n_cols + c_idx[:, None, :]
    dummy = (r_idx[:, None] >= n_rows) | (c_idx[:, None, :] >= n_cols)
    return idx.masked_fill(dummy, n_rows * n_cols).flatten(-2)


def _take(x: Tensor, index: Tensor) -> Tensor:
    """``x[:, index]`` by ``index_select``: rows of ``x`` along dim 1 picked by ``index``.

    Same result as advanced indexing, but about 9x faster on a CPU for the tile gathers (the
    backward is ``index_add`` instead of a sorting ``index_put``).

    Shape:
        x: (B, N, *F), index: (*I) long -> (B, *I, *F).
    """
    picked = x.index_select(1, index.reshape(-1))
    return picked.view(x.shape[0], *index.shape, *x.shape[2:])


class _PatchEngine:
    """Tile products on whole patch vectors (any patch size and stride)."""

    def __init__(
        self,
        emb: Tensor,
        val: Tensor,
        plan: _Plan,
        patch_size: int,
        stride: int,
    ) -> None:
        self.plan, self.rows, self.cols = plan, plan.rows, plan.cols
        self.p, self.s = patch_size, stride
        # One zero row at flat index L stands for every dummy grid slot.
        self.e = F.pad(extract_patches(emb, patch_size, stride), (0, 0, 0, 1))  # (B, L+1, D)
        self.y = F.pad(extract_patches(val, patch_size, stride), (0, 0, 0, 1))  # (B, L+1, V)
        self.cy = val.shape[1]

    def dots(self, rs: slice) -> Tensor:
        """Patch dot products of the tile rows ``rs``: (B, R * TC, Q, U)."""
        q, u = self.plan.query[rs].flatten(0, 1), self.plan.union[rs].flatten(0, 1)
        return torch.matmul(_take(self.e, q), _take(self.e, u).transpose(-1, -2))

    def aggregate(self, rs: slice, w: Tensor) -> Tensor:
        """Fold the weighted candidates of tile rows ``rs`` into a stripe (B, K*C_Y, h, W').

        ``w``: (B, R * TC, Q, K, U). Consecutive tile rows hold consecutive grid rows, so the
        stripe of ``R`` tile rows is one fold.
        """
        rows, cols, p, s = self.rows, self.cols, self.p, self.s
        b, _, qn, k, _ = w.shape
        tc = cols.query.shape[0]
        u = self.plan.union[rs].flatten(0, 1)
        agg = torch.matmul(w.flatten(2, 3), _take(self.y, u))  # (B, R*TC, Q*K, V)
        qr, qc = rows.query.shape[1], cols.query.shape[1]
        agg = agg.reshape(b, -1, tc, qr, qc, k, self.cy * p * p)
        n_r = agg.shape[1]
        agg = agg.permute(0, 5, 6, 1, 3, 2, 4).reshape(b * k, self.cy * p * p, n_r * qr, tc * qc)
        height, width = (n_r * qr - 1) * s + p, (tc * qc - 1) * s + p
        stripe = F.fold(agg.flatten(2), (height, width), p, stride=s)
        return stripe.reshape(b, k * self.cy, height, width)


def _diagonal_slices(m: int, q: tuple[int, int], u: tuple[int, int]) -> list[tuple[slice, ...]]:
    """The ``m * m`` index windows ``[dy : dy + qr, dx : dx + qc, dy : dy + ur, dx : dx + uc]``."""
    return [
        (
            Ellipsis,
            slice(dy, dy + q[0]),
            slice(dx, dx + q[1]),
            slice(dy, dy + u[0]),
            slice(dx, dx + u[1]),
        )
        for dy in range(m)
        for dx in range(m)
    ]


def _sum_diagonals_impl(g: Tensor, m: int) -> Tensor:
    *_, a, b, c, d = g.shape
    parts = iter(_diagonal_slices(m, (a - m + 1, b - m + 1), (c - m + 1, d - m + 1)))
    out = g[next(parts)].clone(memory_format=torch.contiguous_format)
    for index in parts:
        out += g[index]
    return out


def _spread_diagonals_impl(w: Tensor, m: int) -> Tensor:
    *lead, qr, qc, ur, uc = w.shape
    out = w.new_zeros(*lead, qr + m - 1, qc + m - 1, ur + m - 1, uc + m - 1)
    for index in _diagonal_slices(m, (qr, qc), (ur, uc)):
        out[index] += w
    return out


class _SumDiagonals(torch.autograd.Function):
    """``out[.., a, b, c, d] = sum_{dy, dx < m} g[.., a + dy, b + dx, c + dy, d + dx]``.

    Its adjoint is :class:`_SpreadDiagonals`; each is the other's backward, so neither records
    the ``m * m`` slice operations for autograd (whose backward would zero-fill and copy a
    tensor of the large shape once per slice).
    """

    @staticmethod
    def forward(ctx, g: Tensor, m: int) -> Tensor:  # type: ignore[override]
        ctx.m = m
        return _sum_diagonals_impl(g, m)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return _SpreadDiagonals.apply(grad, ctx.m), None


class _SpreadDiagonals(torch.autograd.Function):
    """``out[.., a, b, c, d] = sum_{dy, dx < m} w[.., a - dy, b - dx, c - dy, d - dx]``.

    Shape:
        w: (..., qr, qc, ur, uc) -> (..., qr + m - 1, qc + m - 1, ur + m - 1, uc + m - 1).
    """

    @staticmethod
    def forward(ctx, w: Tensor, m: int) -> Tensor:  # type: ignore[override]
        ctx.m = m
        return _spread_diagonals_impl(w, m)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return _SumDiagonals.apply(grad, ctx.m), None


def _overlap_add(tiles: Tensor, dim: int, step: int) -> Tensor:
    """Lay tiles of ``h`` cells side by side, ``step`` cells apart, adding overlaps.

    ``tiles`` has the tile index at ``dim`` and the ``h >= step`` cells of each tile at
    ``dim + 1``; the result merges both into ``(n - 1) * step + h`` cells at ``dim``. A fold
    with a tile-sized kernel does the same, but im2col/col2im are very slow for such kernels,
    on CPU and GPU alike.
    """
    n, h = tiles.shape[dim], tiles.shape[dim + 1]
    if n == 1:  # nothing to overlap (e.g. one row of tiles per chunk, as on a CPU)
        return tiles.select(dim, 0)
    shape = list(tiles.shape)
    out_shape = shape[:dim] + [(n - 1) * step + h] + shape[dim + 2 :]
    out = tiles.new_zeros(out_shape)
    head = tiles.narrow(dim + 1, 0, step).reshape(shape[:dim] + [n * step] + shape[dim + 2 :])
    out.narrow(dim, 0, n * step).copy_(head)
    idx = [slice(None)] * dim
    for j in range(step, h):  # the cells a tile shares with the next ones
        out[(*idx, slice(j, j + (n - 1) * step + 1, step))] += tiles.select(dim + 1, j)
    return out


class _CellEngine:
    """Tile products on ``stride x stride`` cells, exact when ``patch_size = m * stride``.

    A patch is ``m x m`` cells, so a patch dot product is the sum of ``m * m`` cell dot products
    along a diagonal of the cell Gram matrix, and the fold of aggregated patches is a product of
    the cell Gram's transpose pattern with the candidates' cells (see n3_block_cost.md). Both
    products shrink by about ``m * m`` against whole patches.
    """

    def __init__(
        self,
        emb: Tensor,
        val: Tensor,
        plan: _Plan,
        patch_size: int,
        stride: int,
    ) -> None:
        self.plan, self.rows, self.cols = plan, plan.rows, plan.cols
        self.s, self.m = stride, patch_size // stride
        self.e = F.pad(extract_patches(emb, stride, stride), (0, 0, 0, 1))  # (B, cells+1, Dc)
        self.y = F.pad(extract_patches(val, stride, stride), (0, 0, 0, 1))  # (B, cells+1, Vc)
        self.cy = val.shape[1]

    def dots(self, rs: slice) -> Tensor:
        """Patch dot products of the tile rows ``rs`` from cell products: (B, R * TC, Q, U)."""
        m = self.m
        qr, qc = self.rows.query.shape[1], self.cols.query.shape[1]
        ur, uc = self.rows.union.shape[1], self.cols.union.shape[1]
        q = self.plan.query_cells[rs].flatten(0, 1)
        u = self.plan.union_cells[rs].flatten(0, 1)
        g = torch.matmul(_take(self.e, q), _take(self.e, u).transpose(-1, -2))  # (B, R*TC, Q', U')
        g = g.reshape(*g.shape[:2], qr + m - 1, qc + m - 1, ur + m - 1, uc + m - 1)
        # A patch's dot product sums m * m cell dot products along a diagonal of the cell Gram.
        dots = _SumDiagonals.apply(g, m) if m > 1 else g
        return dots.reshape(*g.shape[:2], qr * qc, ur * uc)

    def aggregate(self, rs: slice, w: Tensor) -> Tensor:
        """Fold the weighted candidates of tile rows ``rs`` into a stripe (B, K*C_Y, h, W').

        ``w``: (B, R * TC, Q, K, U).
        """
        m, s, cy = self.m, self.s, self.cy
        b, rtc, _, k, _ = w.shape
        tc = self.cols.query.shape[0]
        qr, qc = self.rows.query.shape[1], self.cols.query.shape[1]
        ur, uc = self.rows.union.shape[1], self.cols.union.shape[1]
        w = w.reshape(b, rtc, qr, qc, k, ur, uc).permute(0, 1, 4, 2, 3, 5, 6)
        # omega[v, c'] = sum over cell offsets d of w[v - d, c' - d]: which candidate cell feeds
        # which output cell, summed over the (up to m * m) patches covering the output cell.
        omega = _SpreadDiagonals.apply(w, m) if m > 1 else w
        u = self.plan.union_cells[rs].flatten(0, 1)
        yu = _take(self.y, u)  # (B, R*TC, U', Vc)
        omega = omega.reshape(b * rtc, k * (qr + m - 1) * (qc + m - 1), yu.shape[2])
        out = torch.bmm(omega, yu.reshape(b * rtc, yu.shape[2], yu.shape[3]))  # (B*R*TC, ., Vc)
        hr, hc = qr + m - 1, qc + m - 1
        # (B, K, C_Y, tile row, cell row, dy, tile, cell column, dx)
        out = out.reshape(b, rtc // tc, tc, k, hr, hc, cy, s, s).permute(0, 3, 6, 1, 4, 7, 2, 5, 8)
        # Neighbouring tiles share their last m - 1 cells, along rows and columns alike.
        out = _overlap_add(out, 6, qc)  # (B, K, C_Y, R, hr, s, W cells, s)
        out = _overlap_add(out, 3, qr)  # (B, K, C_Y, H cells, s, W cells, s)
        return out.reshape(b, k * cy, out.shape[3] * s, out.shape[5] * s)


@dataclass(frozen=True)
class _Plan:
    """Everything about the tiling that depends only on the geometry (cached)."""

    rows: _AxisTiles
    cols: _AxisTiles
    query: Tensor  # (TR, TC, Q) flat patch index of each query slot
    union: Tensor  # (TR, TC, U) flat patch index of each candidate slot
    valid: Tensor  # (TR, TC, Q, U) bool: candidate in the query's window, not the query
    for_weights: Tensor  # (TR, TC, Q, U) bool: valid, and dummy queries see all real slots
    keep: Tensor | None  # (TR, TC, Q, 1, 1) bool, real queries; None if all are real
    query_cells: Tensor  # (TR, TC, Q') flat cell index of the queries' cells
    union_cells: Tensor  # (TR, TC, U') flat cell index of the candidates' cells


@functools.lru_cache(maxsize=4)
def _plan(n1: int, n2: int, window: int, tile: int, m: int, device: torch.device) -> _Plan:
    rows = _axis_tiles(n1, window, tile, m, device)
    cols = _axis_tiles(n2, window, tile, m, device)
    query, union, valid, for_weights, query_cells, union_cells = ([] for _ in range(6))
    for r in range(rows.query.shape[0]):
        query.append(_flat(rows.query[r], cols.query, n1, n2))
        union.append(_flat(rows.union[r], cols.union, n1, n2))
        mask_r, weights_r = _tile_row_mask(rows, cols, r)
        valid.append(mask_r)
        for_weights.append(weights_r)
        query_cells.append(_flat(rows.query_cells[r], cols.query_cells, rows.cells, cols.cells))
        union_cells.append(_flat(rows.union_cells[r], cols.union_cells, rows.cells, cols.cells))
    q = torch.stack(query)
    real = q < n1 * n2
    return _Plan(
        rows,
        cols,
        q,
        torch.stack(union),
        torch.stack(valid),
        torch.stack(for_weights),
        None if bool(real.all()) else real[..., None, None],
        torch.stack(query_cells),
        torch.stack(union_cells),
    )


# Elements of one chunk's weights (B x R x TC x Q x K x U) that the fast path aims for when it
# groups tile rows. On a CPU, small chunks are fastest (they stay in cache: at 512 x 512 one row
# of tiles took 1.09 s a block and two rows 1.16 s) and keep the memory of a forward pass close
# to that of the convolutions around it. On an accelerator, where every kernel launch costs
# time, several rows go at once: 2^23 weights (32 MB in float32; with the rule's temporaries and
# the aggregation a chunk needs about five times that) make a 1024 x 1024 image 13 chunks
# instead of 52 rows, and a whole training batch of 80 x 80 crops is one tile anyway.
_CHUNK_ELEMENTS = {"cpu": 1 << 19}
_CHUNK_ELEMENTS_DEFAULT = 1 << 23


def _rows_per_chunk(weights_per_row: int, device: torch.device, n_rows: int) -> int:
    budget = _CHUNK_ELEMENTS.get(device.type, _CHUNK_ELEMENTS_DEFAULT)
    return max(1, min(n_rows, budget // max(1, weights_per_row)))


def window_aggregate_fast(
    embedding: Tensor,
    values: Tensor,
    k: int,
    weight_fn: WeightFn,
    *,
    patch_size: int,
    stride: int,
    search_window: int,
    temperature: Tensor | None = None,
    logits_fn: Callable[[Tensor, Tensor | None], Tensor] | None = None,
    tile: int = 4,
    cells: bool | None = None,
    rows_per_chunk: int | None = None,
) -> Tensor:
    """Neighbour volumes by tiled matrix products; same result as the reference.

    See :func:`window_aggregate_reference` for the arguments and the module docstring for the
    method. ``tile`` is the side of a query tile in grid cells. ``cells`` chooses the cell
    formulation (default: whenever ``patch_size`` is a multiple of ``stride``).
    ``rows_per_chunk`` is how many rows of tiles are processed together (default: as many as
    keep one chunk's weights near a device-dependent size, see ``_CHUNK_ELEMENTS``); it changes
    speed and memory, not the result.

    Shape:
        embedding: (B, C_E, H, W), values: (B, C_Y, H, W) -> (B, K, C_Y, H, W).
    """
    n1, n2 = _check(embedding, values, k, patch_size, stride, search_window)
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    if rows_per_chunk is not None and (not isinstance(rows_per_chunk, int) or rows_per_chunk < 1):
        raise ValueError(f"rows_per_chunk must be a positive integer, got {rows_per_chunk!r}")
    if cells is None:
        cells = patch_size % stride == 0
    elif cells and patch_size % stride:
        raise ValueError(f"cells needs patch_size % stride == 0, got {patch_size} % {stride}")
    b, cy = values.shape[:2]
    if b == 0:
        return values.new_zeros(0, k, *values.shape[1:])
    m = patch_size // stride if cells else 1
    plan = _plan(n1, n2, search_window, tile, m, embedding.device)
    engine_cls = _CellEngine if cells else _PatchEngine
    engine = engine_cls(embedding, values, plan, patch_size, stride)
    # Squared norms of the patch vectors, one zero for the dummy slot: (B, L + 1).
    sq = F.avg_pool2d((embedding * embedding).sum(1, keepdim=True), patch_size, stride)
    sq = F.pad(sq.flatten(1) * (patch_size * patch_size), (0, 1))
    t_all = _temperature_per_query(temperature, b, n1 * n2)
    if t_all is not None:
        t_all = F.pad(t_all, (0, 0, 0, 1), value=1.0)  # (B, L + 1, 1)

    n_rows, tc, qn, un = plan.valid.shape
    if rows_per_chunk is None:
        rows_per_chunk = _rows_per_chunk(b * tc * qn * k * un, embedding.device, n_rows)
    chunks = [slice(r, min(r + rows_per_chunk, n_rows)) for r in range(0, n_rows, rows_per_chunk)]

    # Stage 1: logits of every tile, (B, TR * TC, Q, U): O(L * U) memory, a few floats a pixel.
    logits = []
    for rs in chunks:
        q, u = plan.query[rs].flatten(0, 1), plan.union[rs].flatten(0, 1)
        # -|a - b|^2 = 2<a, b> - |a|^2 - |b|^2, clamped at 0 against rounding.
        lg = 2 * engine.dots(rs) - _take(sq, q)[..., None] - _take(sq, u)[:, :, None]
        logits.append(lg.clamp_max_(0))
    logits = torch.cat(logits, 1) if len(logits) > 1 else logits[0]
    if logits_fn is not None:
        logits = logits_fn(logits, plan.valid.flatten(0, 1).expand_as(logits))

    # Stage 2: weights, aggregation and folding, one chunk of tile rows at a time.
    hp, wp = values.shape[-2:]
    qr, qc = plan.rows.query.shape[1], plan.cols.query.shape[1]
    out_h = (n_rows * qr - 1) * stride + patch_size
    out_w = (tc * qc - 1) * stride + patch_size
    out = values.new_zeros(b, k * cy, max(out_h, hp), max(out_w, wp))
    for rs in chunks:
        tiles = slice(rs.start * tc, rs.stop * tc)
        t = _take(t_all, plan.query[rs].flatten(0, 1)) if t_all is not None else None
        w = weight_fn(logits[:, tiles], t, plan.for_weights[rs].flatten(0, 1))
        # Masked candidates already have weight 0; padded (dummy) queries must not contribute.
        if plan.keep is not None:
            w = w * plan.keep[rs].flatten(0, 1)
        stripe = engine.aggregate(rs, w)  # (B, K * C_Y, h, W')
        top = rs.start * qr * stride
        out[:, :, top : top + stripe.shape[2], : stripe.shape[3]] += stripe
    out = out[:, :, :hp, :wp]
    out.div_(overlap_count((hp, wp), patch_size, stride, out))  # in place: saves a copy
    return out.reshape(b, k, cy, hp, wp)


def window_aggregate(
    embedding: Tensor,
    values: Tensor,
    k: int,
    weight_fn: WeightFn,
    *,
    patch_size: int,
    stride: int,
    search_window: int,
    temperature: Tensor | None = None,
    logits_fn: Callable[[Tensor, Tensor | None], Tensor] | None = None,
    impl: Impl = "auto",
) -> Tensor:
    """Front door: ``impl="reference"`` or ``"fast"``; ``"auto"`` picks the fast path.

    Shape:
        embedding: (B, C_E, H, W), values: (B, C_Y, H, W) -> (B, K, C_Y, H, W).
    """
    kwargs = dict(
        patch_size=patch_size,
        stride=stride,
        search_window=search_window,
        temperature=temperature,
        logits_fn=logits_fn,
    )
    if impl == "reference":
        return window_aggregate_reference(embedding, values, k, weight_fn, **kwargs)
    if impl in ("auto", "fast"):
        return window_aggregate_fast(embedding, values, k, weight_fn, **kwargs)
    raise ValueError(f"impl must be 'auto', 'reference' or 'fast', got {impl!r}")
