"""What N3Net-shaped models declare about their geometry: receptive field and smallest input.

The inference layer (tiles, size checks) reads these from the model; nothing outside a model
derives them from its configuration.
"""

from __future__ import annotations

from n3net.ops.patches import grid_size

__all__ = ["check_candidates", "n3_reach"]


def n3_reach(patch_size: int, stride: int, search_window: int) -> int:
    """Pixels one N3 / KNN block reaches beyond a pixel: its search window plus one patch.

    A pixel's output mixes the patches of the search window around the patches holding it:
    ``(search_window // 2) * stride`` pixels of grid offset plus ``patch_size - 1`` within a
    patch.

    Example:
        >>> n3_reach(10, 5, 15)
        44
    """
    return (search_window // 2) * stride + patch_size - 1


def _candidates(height: int, width: int, patch_size: int, stride: int, window: int) -> int:
    rows, cols = grid_size(height, patch_size, stride), grid_size(width, patch_size, stride)
    return min(window, rows) * min(window, cols) - 1


def check_candidates(
    name: str, height: int, width: int, k: int, patch_size: int, stride: int, window: int
) -> None:
    """Raise a one-line ValueError when an image offers fewer than ``k`` candidate patches.

    The message names the smallest square image that works.

    Example:
        >>> check_candidates("n3net", 8, 8, 7, 10, 5, 15)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: n3net needs images of at least 16x16 px (7 neighbours ...), got 8x8
    """
    if _candidates(height, width, patch_size, stride, window) >= k:
        return
    side = patch_size
    while _candidates(side, side, patch_size, stride, window) < k:
        side += 1
    raise ValueError(
        f"{name} needs images of at least {side}x{side} px ({k} neighbours among "
        f"{patch_size}x{patch_size} patches at stride {stride}), got {height}x{width}"
    )
