"""Run an image-to-image model over overlapping tiles to bound its memory: :func:`tiled_apply`.

Crop-centre stitching. The image is split into *cores* of at most ``tile`` pixels per side
that partition it; each core goes through the model inside a *window* reaching ``context``
pixels beyond it on every side (clamped at the image border), and only the core of the
window's output is kept, so no blending is needed. The overlap lies outside the tile: a window
is at most ``tile + 2 * context`` pixels wide, and a small ``tile`` never leaves a tiny core.
For a model whose output pixel depends on inputs at most ``r`` pixels away, ``context >= r``
gives the whole-image result up to float summation order.

Patch grids: N3Net cuts its input into patches on a grid anchored to the input's border, so
the same pixels are cut differently in a window whose start is not on the whole image's grid.
With ``grid=(patch_size, stride)`` each window grows by less than ``stride`` pixels per side
until its own grid lies on the whole image's grid (:func:`axis_windows`); without that, tiles
of a trained N3Net were off by 0.01 to 0.06 dB whatever the context.

Scale: a model whose output is ``scale`` times its input (super-resolution) is tiled the same
way in input pixels; its output cores are the input cores times ``scale``.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size, ``s`` the output scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

from n3net.ops.patches import patch_padding

__all__ = ["Window", "axis_windows", "tiled_apply", "window_side"]


class Window(NamedTuple):
    """One axis's slice of a tile: the window fed to the model and the core kept from it."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def window_side(tile: int, context: int, grid: tuple[int, int] | None = None) -> int:
    """The longest window :func:`axis_windows` makes for cores of ``tile`` pixels.

    Example:
        >>> window_side(256, 112, (10, 5))
        488
    """
    return tile + 2 * context + (2 * (grid[1] - 1) if grid else 0)


def _aligned(start: int, stop: int, origin: int, grid: tuple[int, int]) -> bool:
    patch_size, stride = grid
    return (start - patch_padding(stop - start, patch_size, stride)[0] - origin) % stride == 0


def axis_windows(
    size: int, tile: int, context: int, grid: tuple[int, int] | None = None
) -> list[Window]:
    """Split one axis into windows around cores of at most ``tile`` pixels.

    Cores partition ``[0, size)`` into ``ceil(size / tile)`` near-equal parts; each window
    reaches ``context`` pixels beyond its core (clamped to the axis). With ``grid``, a window
    then grows by less than ``stride`` pixels on either side until the patches the model cuts
    from it (with :func:`~n3net.ops.patches.patch_padding`) are patches of the whole axis's
    grid.

    Args:
        size: axis length in pixels.
        tile: the longest core; an axis no longer than ``tile`` is one window.
        context: pixels kept on each side of a core (at least the receptive-field radius for
            the whole-image result).
        grid: ``(patch_size, stride)`` of the model's patch grid, or None.

    Returns:
        The windows, cores in order.

    Example:
        >>> [tuple(w) for w in axis_windows(10, 4, 1)]  # (start, stop, core_start, core_stop)
        [(0, 4, 0, 3), (2, 7, 3, 6), (5, 10, 6, 10)]
    """
    if tile < 1 or context < 0:
        raise ValueError(f"tile must be >= 1 and context >= 0, got {tile} and {context}")
    if size <= tile:
        return [Window(0, size, 0, size)]
    count = math.ceil(size / tile)
    edges = [i * size // count for i in range(count + 1)]
    stride = grid[1] if grid else 1
    growths = sorted(((a, b) for a in range(stride) for b in range(stride)), key=sum)
    origin = -patch_padding(size, *grid)[0] if grid else 0  # grid start of the whole axis
    windows = []
    for core_start, core_stop in zip(edges[:-1], edges[1:], strict=True):
        for before, after in growths:
            start = max(core_start - context - before, 0)
            stop = min(core_stop + context + after, size)
            if grid is None or _aligned(start, stop, origin, grid):
                break
        else:  # pragma: no cover - some growth always aligns (stride consecutive lengths)
            raise AssertionError(f"no grid-aligned window for core {core_start}:{core_stop}")
        windows.append(Window(start, stop, core_start, core_stop))
    return windows


def tiled_apply(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int | None,
    context: int = 0,
    *,
    grid: tuple[int, int] | None = None,
    scale: int = 1,
    progress: bool = False,
    description: str = "tiles",
) -> Tensor:
    """Apply ``fn`` to overlapping windows of ``x`` and stitch the cores of its outputs.

    Args:
        fn: image-to-image callable, e.g. a model in eval mode (wrap the call in
            ``torch.inference_mode()`` yourself when you need it).
        x: input images.
        tile: the longest core side in pixels; None or <= 0 runs the whole image in one call.
        context: pixels of context on each side of a core (see :func:`axis_windows`).
        grid: the model's ``(patch_size, stride)`` patch grid, or None.
        scale: ``fn``'s output size over its input size (1 for denoising).
        progress: show a tqdm bar over the tiles (only when there are several).
        description: the bar's label.

    Returns:
        ``fn``'s output for the whole image, assembled from the windows.

    Raises:
        ValueError: ``x`` not 4-D, or ``fn`` returning another size than ``scale`` times its
            window.

    Shape:
        x: (B, C, H, W) -> (B, C', s * H, s * W), C' being ``fn``'s output channels.

    Example:
        >>> import torch
        >>> x = torch.rand(1, 1, 30, 20)
        >>> up = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2)
        >>> torch.equal(tiled_apply(up, x, 8, 0, scale=2), up(x))
        True
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if tile is None or tile <= 0:
        return fn(x)
    height, width = x.shape[-2:]
    rows = axis_windows(height, tile, context, grid)
    cols = axis_windows(width, tile, context, grid)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x)

    from tqdm import tqdm

    out: Tensor | None = None
    bar = tqdm(total=len(rows) * len(cols), desc=description, unit="tile", disable=not progress)
    with bar:
        for row in rows:
            for col in cols:
                y = fn(x[..., row.start : row.stop, col.start : col.stop])
                expected = (scale * (row.stop - row.start), scale * (col.stop - col.start))
                if tuple(y.shape[-2:]) != expected:
                    raise ValueError(
                        f"fn must return {scale} x its input size, got {tuple(y.shape[-2:])} "
                        f"for a {row.stop - row.start}x{col.stop - col.start} window"
                    )
                if out is None:
                    out = y.new_empty((*y.shape[:-2], scale * height, scale * width))
                top = scale * (row.core_start - row.start)
                left = scale * (col.core_start - col.start)
                rows_kept = scale * (row.core_stop - row.core_start)
                cols_kept = scale * (col.core_stop - col.core_start)
                out[
                    ...,
                    scale * row.core_start : scale * row.core_stop,
                    scale * col.core_start : scale * col.core_stop,
                ] = y[..., top : top + rows_kept, left : left + cols_kept]
                del y
                bar.update()
    assert out is not None
    return out
