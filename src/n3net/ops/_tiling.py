"""Search-window geometry and the tiling plan of the fast window path.

Axis legend as in :mod:`n3net.ops.windows`: ``L`` patches (``n1 * n2`` grid), ``M`` candidates per
query, ``Q`` queries per tile, ``U`` candidates per tile (the tile's union window), ``TR`` / ``TC``
rows / columns of tiles, ``K`` neighbours.

The plan (indices and masks of every tile) depends only on the geometry, so it is cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["window_candidates", "window_starts"]


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


def _plan(n1: int, n2: int, window: int, tile: int, m: int, device: torch.device) -> _Plan:
    # Built outside inference mode: a cached plan made by an inference pass must still serve
    # a later pass that autograd records (inference tensors cannot be saved for backward).
    with torch.inference_mode(False):
        return _build_plan(n1, n2, window, tile, m, device)


@functools.lru_cache(maxsize=4)
def _build_plan(n1: int, n2: int, window: int, tile: int, m: int, device: torch.device) -> _Plan:
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
