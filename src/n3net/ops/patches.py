"""Patch geometry of the image N3 block: padding, patch grid, im2col and col2im.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size, ``L`` patches per image
(``n1 * n2`` on the patch grid), ``P`` patch pixels (``patch_size ** 2``).

Patch vectors are channel-major ``(channel, row, column)`` flattened, as :func:`F.unfold` lays
them out and as the authors' checkpoints expect.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "extract_patches",
    "fold_patches",
    "grid_size",
    "pad_for_patches",
    "patch_padding",
]


def patch_padding(size: int, patch_size: int, stride: int) -> tuple[int, int]:
    """Zero padding ``(before, after)`` of one axis so that patches tile it exactly.

    The authors' rule: pad by ``(-(size - patch_size)) mod stride``, ``floor`` of half before and
    the rest after. An axis shorter than one patch is padded up to ``patch_size`` (one patch), so
    every non-empty image has at least one patch.

    Example:
        >>> patch_padding(81, 10, 5), patch_padding(80, 10, 5), patch_padding(4, 10, 5)
        ((2, 2), (0, 0), (3, 3))
    """
    pad = (-(size - patch_size)) % stride
    if size + pad < patch_size:
        pad = patch_size - size
    return pad // 2, pad - pad // 2


def grid_size(size: int, patch_size: int, stride: int) -> int:
    """Number of patch positions along an axis of ``size`` pixels (after :func:`patch_padding`)."""
    before, after = patch_padding(size, patch_size, stride)
    return (size + before + after - patch_size) // stride + 1


def pad_for_patches(x: Tensor, patch_size: int, stride: int) -> Tensor:
    """Zero-pad ``x`` on both spatial axes with :func:`patch_padding`.

    Shape:
        x: (B, C, H, W) -> (B, C, H + pad_h, W + pad_w).
    """
    top, bottom = patch_padding(x.shape[-2], patch_size, stride)
    left, right = patch_padding(x.shape[-1], patch_size, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom))


def extract_patches(x: Tensor, patch_size: int, stride: int) -> Tensor:
    """im2col: every patch of an already padded image as a row vector.

    Shape:
        x: (B, C, H, W) -> (B, L, C * P), patches in row-major grid order.
    """
    return F.unfold(x, patch_size, stride=stride).transpose(1, 2)


def fold_patches(
    patches: Tensor, output_size: tuple[int, int], patch_size: int, stride: int
) -> Tensor:
    """col2im: sum overlapping patches back into an image and divide by the overlap count.

    Shape:
        patches: (B, L, C * P) -> (B, C, H, W) with ``(H, W) = output_size`` (padded size).
    """
    summed = F.fold(patches.transpose(1, 2), output_size, patch_size, stride=stride)
    return summed / overlap_count(output_size, patch_size, stride, summed)


def overlap_count(
    output_size: tuple[int, int], patch_size: int, stride: int, like: Tensor
) -> Tensor:
    """How many patches cover each pixel of a padded image (>= 1 everywhere).

    Shape:
        -> (1, 1, H, W), dtype and device of ``like``.
    """
    n1 = (output_size[0] - patch_size) // stride + 1
    n2 = (output_size[1] - patch_size) // stride + 1
    ones = like.new_ones(1, patch_size * patch_size, n1 * n2)
    return F.fold(ones, output_size, patch_size, stride=stride)
