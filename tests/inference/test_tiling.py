"""Tests for n3net.inference.tiling: one tiler, grid-aligned, for any output scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n3net.inference.tiling import Window, axis_windows, tiled_apply, window_side
from n3net.ops.patches import patch_padding


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


class _ToyUpscaler(nn.Module):
    """Nearest x2 upscaling followed by a 3x3 box sum: radius 1 in input pixels, scale 2."""

    scale = 2

    def forward(self, x: Tensor) -> Tensor:
        up = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
        weight = torch.ones(x.shape[1], 1, 3, 3, dtype=x.dtype)
        return F.conv2d(up, weight, padding=1, groups=x.shape[1])


@pytest.mark.parametrize(
    ("height", "width", "tile", "context"),
    [(37, 29, 8, 2), (37, 29, 8, 5), (40, 40, 10, 2), (13, 50, 9, 2), (50, 13, 9, 3)],
    ids=["odd-min-context", "odd-more-context", "square", "narrow", "short"],
)
def test_tiled_equals_whole_image(height: int, width: int, tile: int, context: int) -> None:
    x = _integer_image(2, 3, height, width)
    assert torch.equal(tiled_apply(_box5, x, tile, context), _box5(x))


def test_context_must_cover_the_receptive_field() -> None:
    x = _integer_image(1, 1, 45, 38)
    assert torch.equal(tiled_apply(_box5_twice, x, 12, 4), _box5_twice(x))
    # Too little context for radius 4 shows the seams (so the test above means something).
    assert not torch.equal(tiled_apply(_box5_twice, x, 12, 2), _box5_twice(x))


@pytest.mark.parametrize("tile", [None, 0, -1, 64, 100])
def test_single_pass(tile: int | None) -> None:
    calls = []

    def fn(t: Tensor) -> Tensor:
        calls.append(tuple(t.shape))
        return t * 2

    x = torch.rand(1, 1, 40, 30)
    assert torch.equal(tiled_apply(fn, x, tile, 4), x * 2)
    assert calls == [(1, 1, 40, 30)]


def test_output_scale_two() -> None:
    x = _integer_image(1, 2, 33, 27)
    model = _ToyUpscaler()
    whole = model(x)
    assert whole.shape == (1, 2, 66, 54)
    assert torch.equal(tiled_apply(model, x, 10, 1, scale=2), whole)
    assert not torch.equal(tiled_apply(model, x, 10, 0, scale=2), whole)  # seams without context


def test_channels_may_change() -> None:
    x = torch.rand(1, 3, 40, 37)

    def fn(t: Tensor) -> Tensor:
        return t.mean(dim=1, keepdim=True)

    out = tiled_apply(fn, x, 16, 3)
    assert out.shape == (1, 1, 40, 37)
    assert torch.allclose(out, fn(x))


def test_axis_windows_partition_and_context() -> None:
    for size in (17, 32, 33, 64, 100, 101):
        windows = axis_windows(size, 16, 3)
        assert windows[0].core_start == 0 and windows[-1].core_stop == size
        for before, after in zip(windows, windows[1:], strict=False):
            assert before.core_stop == after.core_start
        for w in windows:
            assert 0 <= w.start <= w.core_start < w.core_stop <= w.stop <= size
            assert w.core_stop - w.core_start <= 16  # the core is the tile
            assert w.core_start - w.start == min(3, w.core_start)  # context outside the tile
            assert w.stop - w.core_stop == min(3, size - w.core_stop)


def test_small_tiles_keep_large_cores() -> None:
    """The overlap lies outside the tile, so the work grows at most with (1 + 2 r / tile)²."""
    windows = axis_windows(500, 256, 112, (10, 5))
    assert [w.core_stop - w.core_start for w in windows] == [250, 250]
    assert max(w.stop - w.start for w in windows) <= window_side(256, 112, (10, 5))


@pytest.mark.parametrize(
    "size, tile, context, patch_size, stride",
    [(256, 96, 16, 10, 5), (512, 128, 64, 10, 5), (121, 26, 7, 4, 2), (97, 50, 0, 10, 5)],
    ids=["set12-256", "set12-512", "odd", "no-context"],
)
def test_grid_aligned_windows(
    size: int, tile: int, context: int, patch_size: int, stride: int
) -> None:
    windows = axis_windows(size, tile, context, (patch_size, stride))
    assert windows[0].core_start == 0 and windows[-1].core_stop == size
    origin = -patch_padding(size, patch_size, stride)[0]
    for i, w in enumerate(windows):
        if i:
            assert w.core_start == windows[i - 1].core_stop  # cores partition the axis
        assert w.stop - w.start <= window_side(tile, context, (patch_size, stride))
        assert w.start <= max(w.core_start - context, 0)
        assert w.stop >= min(w.core_stop + context, size)
        own = w.start - patch_padding(w.stop - w.start, patch_size, stride)[0]
        assert (own - origin) % stride == 0  # the window's patches are the image's patches


def test_hand_computed_windows() -> None:
    assert axis_windows(10, 4, 1) == [Window(0, 4, 0, 3), Window(2, 7, 3, 6), Window(5, 10, 6, 10)]
    assert axis_windows(10, 10, 3) == [Window(0, 10, 0, 10)]


def test_batch_zero() -> None:
    x = torch.zeros(0, 1, 40, 40)
    assert tiled_apply(lambda t: t + 1, x, 16, 2).shape == (0, 1, 40, 40)


def test_progress_bar_counts_tiles(capsys: pytest.CaptureFixture[str]) -> None:
    tiled_apply(lambda t: t, torch.zeros(1, 1, 40, 40), 16, 2, progress=True, description="img")
    err = capsys.readouterr().err
    assert "img" in err and "9/9" in err


class TestErrors:
    def test_rank(self) -> None:
        with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\)"):
            tiled_apply(_box5, torch.zeros(1, 8, 8), 4, 1)

    def test_negative_context(self) -> None:
        with pytest.raises(ValueError, match="context >= 0, got 16 and -1"):
            tiled_apply(_box5, torch.zeros(1, 1, 40, 40), 16, -1)

    def test_size_change(self) -> None:
        with pytest.raises(ValueError, match="fn must return 1 x its input size"):
            tiled_apply(lambda t: t[..., 1:, :], torch.zeros(1, 1, 40, 40), 16, 2)

    def test_wrong_scale(self) -> None:
        with pytest.raises(ValueError, match="fn must return 2 x its input size"):
            tiled_apply(lambda t: t, torch.zeros(1, 1, 40, 40), 16, 2, scale=2)
