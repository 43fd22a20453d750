"""Run an image-to-image network over overlapping tiles to bound its memory use.

Crop-centre stitching: the image is split into a grid of *cores* that partition it; each core is
processed inside a ``tile``-sized window reaching at least ``overlap`` pixels beyond the core on
every side that is not an image border (windows shift inward at the borders so they keep their
size). Only the core of each window's output is kept, so no blending is needed. For a network
whose output pixel depends on inputs at most ``r`` pixels away, ``overlap >= r`` gives exactly
the whole-image result (up to floating-point summation order). Networks with image-wide
dependencies (N3Net's patch grid is aligned to its input's border, and its search window spans
about 75 px) give results that are close but not identical.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

__all__ = ["denoise_tiled"]


def _axis_tiles(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split one axis into (window start, window stop, core start, core stop) tuples.

    Cores partition ``[0, size)`` evenly with lengths at most ``tile - 2 * overlap``; each window
    has length ``tile`` and starts ``overlap`` before its core, clamped into the axis.
    """
    if size <= tile:
        return [(0, size, 0, size)]
    core = tile - 2 * overlap
    count = math.ceil(size / core)
    edges = [i * size // count for i in range(count + 1)]
    tiles = []
    for core_start, core_stop in zip(edges[:-1], edges[1:], strict=True):
        start = min(max(core_start - overlap, 0), size - tile)
        tiles.append((start, start + tile, core_start, core_stop))
    return tiles


def denoise_tiled(
    fn: Callable[[Tensor], Tensor], x: Tensor, tile: int | None, overlap: int = 0
) -> Tensor:
    """Apply ``fn`` to overlapping ``tile x tile`` windows of ``x`` and stitch their centres.

    Args:
        fn: image-to-image callable preserving the spatial size, e.g. a denoiser in eval mode
            (wrap the call in ``torch.no_grad()`` yourself when you need it).
        x: input images.
        tile: window side in pixels; None or <= 0 processes the whole image in one call, and an
            axis no longer than ``tile`` is not split.
        overlap: context in pixels kept around each core; must satisfy ``2 * overlap < tile``.
            Use at least the network's receptive-field radius.

    Returns:
        ``fn``'s output for the whole image, assembled from the windows.

    Raises:
        ValueError: bad ``x`` rank, negative ``overlap``, ``2 * overlap >= tile``, or ``fn``
            changing the spatial size.

    Shape:
        x: (B, C, H, W) -> (B, C', H, W), C' being ``fn``'s output channels.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if tile is None or tile <= 0:
        return fn(x)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if 2 * overlap >= tile:
        raise ValueError(f"2 * overlap must be < tile, got 2 * {overlap} >= {tile}")
    height, width = x.shape[-2:]
    rows, cols = _axis_tiles(height, tile, overlap), _axis_tiles(width, tile, overlap)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x)

    out: Tensor | None = None
    for row_start, row_stop, core_top, core_bottom in rows:
        for col_start, col_stop, core_left, core_right in cols:
            y = fn(x[..., row_start:row_stop, col_start:col_stop])
            expected = (row_stop - row_start, col_stop - col_start)
            if tuple(y.shape[-2:]) != expected:
                raise ValueError(
                    f"fn must keep the spatial size, got {tuple(y.shape[-2:])} for {expected}"
                )
            if out is None:
                out = y.new_empty((*y.shape[:-2], height, width))
            out[..., core_top:core_bottom, core_left:core_right] = y[
                ...,
                core_top - row_start : core_bottom - row_start,
                core_left - col_start : core_right - col_start,
            ]
    assert out is not None
    return out
