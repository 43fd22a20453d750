"""Tests for n3net.eval.tiling: crop-centre stitching equals whole-image processing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from n3net.eval.tiling import _axis_tiles, denoise_tiled


def _box5(x: Tensor) -> Tensor:
    """5 x 5 box sum with zero padding: receptive-field radius 2, exact on integer inputs."""
    weight = torch.ones(x.shape[1], 1, 5, 5, dtype=x.dtype)
    return F.conv2d(x, weight, padding=2, groups=x.shape[1])


def _box5_twice(x: Tensor) -> Tensor:
    """Two stacked box sums: receptive-field radius 4."""
    return _box5(_box5(x))


def _integer_image(*shape: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 10, shape, generator=generator).to(torch.float64)


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(37, 53, 16, 2), (37, 53, 16, 4), (64, 64, 20, 3), (40, 17, 12, 2), (9, 40, 16, 2)],
    ids=["odd-min-overlap", "odd-more-overlap", "square", "narrow", "short"],
)
def test_tiled_equals_whole_image(height: int, width: int, tile: int, overlap: int) -> None:
    x = _integer_image(2, 3, height, width)
    assert torch.equal(denoise_tiled(_box5, x, tile, overlap), _box5(x))


def test_deeper_receptive_field() -> None:
    x = _integer_image(1, 1, 45, 50)
    assert torch.equal(denoise_tiled(_box5_twice, x, 20, 4), _box5_twice(x))
    # Too little overlap for radius 4 shows the seams (so the test above means something).
    assert not torch.equal(denoise_tiled(_box5_twice, x, 20, 2), _box5_twice(x))


@pytest.mark.parametrize("tile", [None, 0, -1, 64, 100])
def test_single_pass(tile: int | None) -> None:
    calls = []

    def fn(x: Tensor) -> Tensor:
        calls.append(tuple(x.shape))
        return x * 2

    x = torch.rand(1, 1, 30, 64)
    assert torch.equal(denoise_tiled(fn, x, tile, 4), x * 2)
    assert calls == [(1, 1, 30, 64)]


def test_windows_keep_tile_size_and_channels_may_change() -> None:
    shapes = []

    def fn(x: Tensor) -> Tensor:
        shapes.append(tuple(x.shape[-2:]))
        return torch.cat([x, -x], dim=1)

    x = torch.rand(1, 1, 50, 33)
    out = denoise_tiled(fn, x, 16, 3)
    assert out.shape == (1, 2, 50, 33)
    assert torch.equal(out, torch.cat([x, -x], dim=1))
    assert set(shapes) == {(16, 16)}


def test_axis_tiles_partition() -> None:
    for size in range(1, 80):
        tiles = _axis_tiles(size, 16, 3)
        cores = [(a, b) for _, _, a, b in tiles]
        assert cores[0][0] == 0 and cores[-1][1] == size
        assert all(prev[1] == nxt[0] for prev, nxt in zip(cores[:-1], cores[1:], strict=True))
        for start, stop, core_start, core_stop in tiles:
            assert 0 <= start <= core_start < core_stop <= stop <= size
            assert stop - start == min(16, size)
            assert core_start - start >= 3 or start == 0
            assert stop - core_stop >= 3 or stop == size


def test_batch_zero() -> None:
    x = torch.zeros(0, 1, 40, 40)
    assert denoise_tiled(lambda t: t + 1, x, 16, 2).shape == (0, 1, 40, 40)


class TestErrors:
    def test_rank(self) -> None:
        with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\)"):
            denoise_tiled(_box5, torch.zeros(1, 8, 8), 4, 1)

    def test_overlap_too_large(self) -> None:
        with pytest.raises(ValueError, match="2 \\* overlap must be < tile, got 2 \\* 8 >= 16"):
            denoise_tiled(_box5, torch.zeros(1, 1, 40, 40), 16, 8)

    def test_negative_overlap(self) -> None:
        with pytest.raises(ValueError, match="overlap must be >= 0, got -1"):
            denoise_tiled(_box5, torch.zeros(1, 1, 40, 40), 16, -1)

    def test_size_change(self) -> None:
        with pytest.raises(ValueError, match="fn must keep the spatial size"):
            denoise_tiled(lambda t: t[..., 1:, :], torch.zeros(1, 1, 40, 40), 16, 2)
