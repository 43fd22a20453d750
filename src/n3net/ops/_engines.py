"""Tile products of the fast window path: distances and aggregation, a chunk of tile rows at a time.

Axis legend as in :mod:`n3net.ops.windows`; ``R`` rows of tiles in the chunk, ``Q'`` / ``U'`` the
cells covered by a tile's queries / candidates. Two engines share one interface:
``dots(rows) -> (B, R * TC, Q, U)`` and ``aggregate(rows, weights) -> stripe``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from n3net.ops._tiling import _Plan
from n3net.ops.patches import extract_patches


def _take(x: Tensor, index: Tensor) -> Tensor:
    """``x[:, index]`` by ``index_select``: rows of ``x`` along dim 1 picked by ``index``.

    Same result as advanced indexing, but much faster on a CPU for the tile gathers (one row of
    tiles at 512 x 512, 26 x 361 rows of 200 floats: 1.1 ms against 9.2 ms), and the backward is
    ``index_add`` instead of a sorting ``index_put``.

    Shape:
        x: (B, N, *F), index: (*I) long -> (B, *I, *F).
    """
    picked = x.index_select(1, index.reshape(-1))
    return picked.view(x.shape[0], *index.shape, *x.shape[2:])


def _rows_with_dummy(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Patches (or cells) of ``x`` as rows, plus one zero row at flat index ``L`` that stands
    for every dummy grid slot of the tiling.

    Shape:
        x: (B, C, H, W) -> (B, L + 1, C * kernel * kernel).
    """
    return F.pad(extract_patches(x, kernel, stride), (0, 0, 0, 1))


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
        self.e = _rows_with_dummy(emb, patch_size, stride)  # (B, L+1, D)
        self.y = _rows_with_dummy(val, patch_size, stride)  # (B, L+1, V)
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
    tensor of the large shape once per slice: 16 % of an N3Net CPU training step).

    Shape:
        g: (..., qr + m - 1, qc + m - 1, ur + m - 1, uc + m - 1) -> (..., qr, qc, ur, uc).
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
        self.e = _rows_with_dummy(emb, stride, stride)  # (B, cells+1, Dc)
        self.y = _rows_with_dummy(val, stride, stride)  # (B, cells+1, Vc)
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
