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
  a chunk of tile rows at a time and folded into the output straight away, so memory grows
  linearly in the number of pixels with a small constant and the ``(L, M, D)`` tensor never
  exists. When ``patch_size`` is a multiple of ``stride`` (the paper's 10 / 5), both products run
  on ``stride x stride`` cells instead of whole patches (``_engines._CellEngine``): a patch dot
  product is the sum of ``m * m`` cell dot products on a diagonal of the cell Gram matrix, and the
  fold of the aggregated patches is one product of summed cell weights with the candidates'
  cells, about ``m * m`` times less arithmetic. The tiling
  plan (indices and masks, ``_tiling``) depends only on the geometry and is cached.

The continuous KNN is ill-conditioned where a softmax weight rounds to exactly 1 (``log(1 - w)``
is then ``-inf``, and a rounding difference in the logits can make it finite): the two paths
compute the distances differently (direct differences against ``|a|^2 + |b|^2 - 2<a, b>``), so
for very peaked softmaxes they may differ by more than rounding. They agree closely otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from n3net.ops._engines import _CellEngine, _PatchEngine, _take
from n3net.ops._tiling import _plan, _rows_per_chunk, window_candidates, window_starts
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
    keep one chunk's weights near a device-dependent size, ``_tiling._CHUNK_ELEMENTS``); it changes
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
