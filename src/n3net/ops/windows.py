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
"""

from __future__ import annotations

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
    if torch.isnan(t).any():
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
    """Tiling of one grid axis: query slots and union-window slots per tile (padded)."""

    query: Tensor  # (T, q) grid index, n (a dummy) for padding
    union: Tensor  # (T, u) grid index, n (a dummy) for padding
    inside: Tensor  # (T, q, u) bool: union slot inside the query's window
    count: list[int]  # real queries per tile
    n: int  # grid size of the axis


def _axis_tiles(n: int, window: int, tile: int, device: torch.device) -> _AxisTiles:
    m = min(window, n)
    if n <= window:
        tile = n  # every query's window is the whole axis: one tile is exact and dense
    starts = window_starts(n, window)
    tiles = [(a, min(a + tile, n)) for a in range(0, n, tile)]
    unions = [(int(starts[a]), int(starts[b - 1]) + m) for a, b in tiles]
    u = max(hi - lo for lo, hi in unions)
    query = torch.full((len(tiles), tile), n, dtype=torch.long)
    union = torch.full((len(tiles), u), n, dtype=torch.long)
    inside = torch.zeros(len(tiles), tile, u, dtype=torch.bool)
    for t, ((a, b), (lo, hi)) in enumerate(zip(tiles, unions, strict=True)):
        query[t, : b - a] = torch.arange(a, b)
        union[t, : hi - lo] = torch.arange(lo, hi)
        s = starts[a:b, None]  # (q, 1)
        inside[t, : b - a, : hi - lo] = (union[t, None, : hi - lo] >= s) & (
            union[t, None, : hi - lo] < s + m
        )
    return _AxisTiles(
        query.to(device), union.to(device), inside.to(device), [b - a for a, b in tiles], n
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
) -> Tensor:
    """Neighbour volumes by tiled matrix products; same result as the reference.

    See :func:`window_aggregate_reference` for the arguments and the module docstring for the
    method. ``tile`` is the side of a query tile in grid cells.

    Shape:
        embedding: (B, C_E, H, W), values: (B, C_Y, H, W) -> (B, K, C_Y, H, W).
    """
    n1, n2 = _check(embedding, values, k, patch_size, stride, search_window)
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    b, cy = values.shape[:2]
    dev = embedding.device
    rows = _axis_tiles(n1, search_window, tile, dev)
    cols = _axis_tiles(n2, search_window, tile, dev)
    e = extract_patches(embedding, patch_size, stride)  # (B, L, D)
    y = extract_patches(values, patch_size, stride)  # (B, L, V)
    # One zero row at flat index L stands for every padded (dummy) grid slot.
    e = F.pad(e, (0, 0, 0, 1))
    y = F.pad(y, (0, 0, 0, 1))
    sq = (e * e).sum(-1)  # (B, L + 1)
    lflat = n1 * n2

    def flat(r_idx: Tensor, c_idx: Tensor) -> Tensor:
        # (..., a) rows x (..., c) cols -> flat grid index, dummy -> L
        idx = r_idx[..., :, None] * n2 + c_idx[..., None, :]
        dummy = (r_idx[..., :, None] >= n1) | (c_idx[..., None, :] >= n2)
        return idx.masked_fill(dummy, lflat)

    t_all = _temperature_per_query(temperature, b, lflat)
    if t_all is not None:
        t_all = F.pad(t_all, (0, 0, 0, 1), value=1.0)  # (B, L + 1, 1)

    # Stage 1: logits of every tile (B, TR, TC, Q, U): small, O(L * U).
    logits_rows, masks, wmasks, q_rows, u_rows = [], [], [], [], []
    for r in range(rows.query.shape[0]):
        q_idx = flat(rows.query[r], cols.query).flatten(-2)  # (TC, Q)
        u_idx = flat(rows.union[r], cols.union).flatten(-2)  # (TC, U)
        eq = e[:, q_idx]  # (B, TC, Q, D)
        eu = e[:, u_idx]  # (B, TC, U, D)
        dots = torch.matmul(eq, eu.transpose(-1, -2))  # (B, TC, Q, U)
        dist = sq[:, q_idx, None] + sq[:, None, u_idx].transpose(1, 2) - 2 * dots
        logits_rows.append(-dist.clamp_min(0))
        valid, for_weights = _tile_row_mask(rows, cols, r)
        masks.append(valid)
        wmasks.append(for_weights)
        q_rows.append(q_idx)
        u_rows.append(u_idx)
    logits = torch.stack(logits_rows, 1)  # (B, TR, TC, Q, U)
    if logits_fn is not None:
        logits = logits_fn(logits, torch.stack(masks, 0).expand_as(logits))
    mask = torch.stack(wmasks, 0).expand_as(logits)  # (B, TR, TC, Q, U)

    # Stage 2: weights, aggregation and folding, one row of tiles at a time.
    size = tuple(values.shape[-2:])
    out = values.new_zeros(b, k * cy, *size)
    qr, qc = rows.query.shape[1], cols.query.shape[1]
    for r in range(rows.query.shape[0]):
        t = t_all[:, q_rows[r]] if t_all is not None else None  # (B, TC, Q, 1)
        w = weight_fn(logits[:, r], t, mask[:, r])  # (B, TC, Q, K, U)
        w = w.masked_fill(~mask[:, r, :, :, None, :], 0.0)
        agg = torch.matmul(w.flatten(2, 3), y[:, u_rows[r]])  # (B, TC, Q*K, V)
        # Arrange the tile row's queries as a (qr, TC*qc) patch grid and fold it as a stripe.
        agg = agg.reshape(b, -1, qr, qc, k, cy * patch_size**2)
        agg = agg.permute(0, 4, 5, 2, 1, 3).reshape(b * k, cy * patch_size**2, qr, -1)
        nr = rows.count[r]
        agg = agg[:, :, :nr, :n2].reshape(b * k, cy * patch_size**2, nr * n2)
        height = (nr - 1) * stride + patch_size
        stripe = F.fold(agg, (height, size[1]), patch_size, stride=stride)
        top = int(rows.query[r, 0]) * stride
        out[:, :, top : top + height] += stripe.reshape(b, k * cy, height, size[1])
    out = out / overlap_count(size, patch_size, stride, out)
    return out.reshape(b, k, cy, *size)


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
