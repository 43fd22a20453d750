"""Tests for n3net.ops.patches: the authors' padding rule, im2col / col2im, overlap counts."""

from __future__ import annotations

import pytest
import torch

from n3net.ops.patches import (
    extract_patches,
    fold_patches,
    grid_size,
    overlap_count,
    pad_for_patches,
    patch_padding,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (80, (0, 0)),  # (80 - 10) = 70 = 14 strides
        (81, (2, 2)),  # -(71) mod 5 = 4
        (76, (2, 2)),  # -(66) mod 5 = 4
        (77, (1, 2)),  # -(67) mod 5 = 3: floor(3 / 2) = 1 before
        (78, (1, 1)),  # -(68) mod 5 = 2
        (79, (0, 1)),  # -(69) mod 5 = 1: floor(1 / 2) = 0 before
        (83, (1, 1)),
        (91, (2, 2)),
        (10, (0, 0)),  # exactly one patch
        (9, (0, 1)),  # -(-1) mod 5 = 1 reaches one patch
        (6, (2, 2)),  # -(-4) mod 5 = 4 reaches one patch
        (5, (2, 3)),  # the rule gives 0 (5 px, no patch): padded up to one patch instead
        (1, (4, 5)),
    ],
)
def test_patch_padding_authors_rule(size: int, expected: tuple[int, int]) -> None:
    assert patch_padding(size, 10, 5) == expected


@pytest.mark.parametrize(("patch_size", "stride"), [(10, 5), (4, 3), (3, 1), (5, 5), (7, 2)])
def test_patch_padding_is_the_smallest_exact_tiling(patch_size: int, stride: int) -> None:
    for size in range(1, 60):
        before, after = patch_padding(size, patch_size, stride)
        padded = size + before + after
        # Brute force: the least padding with at least one patch and an exact tiling.
        least = next(
            p
            for p in range(patch_size + stride)
            if size + p >= patch_size and (size + p - patch_size) % stride == 0
        )
        assert before + after == least and before == least // 2, size
        assert grid_size(size, patch_size, stride) == (padded - patch_size) // stride + 1 >= 1


def test_grid_size_examples() -> None:
    assert [grid_size(s, 10, 5) for s in (80, 83, 91, 30, 45, 20, 8, 76)] == [
        15,
        16,
        18,
        5,
        8,
        3,
        1,
        15,
    ]


@pytest.mark.parametrize(("height", "width"), [(83, 91), (20, 20), (7, 12), (3, 40)])
def test_pad_for_patches_centres_the_image(height: int, width: int, device) -> None:
    x = torch.randn(2, 3, height, width, device=device) + 5  # no zeros inside the image
    padded = pad_for_patches(x, 10, 5)
    top, bottom = patch_padding(height, 10, 5)
    left, right = patch_padding(width, 10, 5)
    assert padded.shape == (2, 3, height + top + bottom, width + left + right)
    assert torch.equal(padded[..., top : top + height, left : left + width], x)
    border = padded.clone()
    border[..., top : top + height, left : left + width] = 0
    assert (border == 0).all()
    if top == bottom == left == right == 0:
        assert padded is x


def test_extract_patches_channel_major_layout() -> None:
    # 2 channels, 3 x 3 image, 2 x 2 patches at stride 1: a 2 x 2 patch grid.
    x = torch.arange(18.0).reshape(1, 2, 3, 3)
    patches = extract_patches(x, 2, 1)
    assert patches.shape == (1, 4, 8)
    # Patch (0, 0): channel 0 rows [0 1], [3 4], then channel 1 rows [9 10], [12 13].
    assert patches[0, 0].tolist() == [0, 1, 3, 4, 9, 10, 12, 13]
    # Patch (0, 1) is next (row-major grid order), then (1, 0).
    assert patches[0, 1].tolist() == [1, 2, 4, 5, 10, 11, 13, 14]
    assert patches[0, 2].tolist() == [3, 4, 6, 7, 12, 13, 15, 16]


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_extract_patches_shapes(batch: int, device) -> None:
    x = torch.randn(batch, 2, 20, 25, device=device)
    assert extract_patches(x, 10, 5).shape == (batch, 3 * 4, 2 * 100)


@pytest.mark.parametrize(
    ("height", "width", "patch_size", "stride"),
    [
        (83, 91, 10, 5),
        (20, 20, 10, 5),
        (10, 10, 10, 5),
        (13, 11, 3, 1),
        (11, 17, 4, 3),
        (8, 12, 4, 4),
    ],
    ids=["83x91-p10s5", "20x20", "one-patch", "p3s1", "p4s3", "stride=patch"],
)
def test_fold_of_extract_is_identity(
    height: int, width: int, patch_size: int, stride: int, device, dtype
) -> None:
    x = pad_for_patches(
        torch.randn(2, 3, height, width, device=device, dtype=dtype), patch_size, stride
    )
    patches = extract_patches(x, patch_size, stride)
    back = fold_patches(patches, tuple(x.shape[-2:]), patch_size, stride)
    torch.testing.assert_close(back, x)


def test_fold_averages_overlaps() -> None:
    # Two 2 x 2 patches at stride 1 on a 2 x 3 image: the middle column is their mean.
    patches = torch.tensor([[[1.0, 1, 1, 1], [3.0, 3, 3, 3]]])  # (B=1, L=2, C*P=4)
    out = fold_patches(patches, (2, 3), 2, 1)
    assert out[0, 0].tolist() == [[1, 2, 3], [1, 2, 3]]


def test_overlap_count_hand_values() -> None:
    count = overlap_count((20, 20), 10, 5, torch.empty(0, dtype=torch.float64))
    assert count.shape == (1, 1, 20, 20) and count.dtype == torch.float64
    assert count[0, 0, 0, 0] == 1 and count[0, 0, 7, 7] == 4 and count[0, 0, 12, 2] == 2
    assert count[0, 0, 19, 19] == 1 and count.min() == 1
