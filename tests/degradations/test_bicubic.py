"""MATLAB-compatible bicubic resizing: a direct reference, shapes, errors, the Set5 protocol."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from n3net.degradations import (
    BicubicDegradation,
    bicubic_degrade,
    bicubic_downscale,
    bicubic_upscale,
    crop_to_scale,
)

pytest.importorskip("resize_right")


def _keys(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel, a = -0.5 (MATLAB's bicubic)."""
    a = np.abs(x)
    return np.where(
        a <= 1,
        1.5 * a**3 - 2.5 * a**2 + 1,
        np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0),
    )


def _matlab_matrix(size: int, scale: float) -> np.ndarray:
    """MATLAB imresize's (out, in) weights on one axis, written from its documented algorithm:
    u = x / scale + 0.5 (1 - 1 / scale) in 1-based coordinates, the kernel widened by 1 / scale
    when shrinking, weights normalised, out-of-range indices mirrored (edge repeated)."""
    out_size = round(size * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    matrix = np.zeros((out_size, size))
    for x in range(1, out_size + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        for j in range(left, left + math.ceil(width) + 2):
            distance = u - j
            weight = scale * _keys(scale * distance) if scale < 1 else _keys(distance)
            k = (j - 1) % (2 * size)
            k = k if k < size else 2 * size - 1 - k
            matrix[x - 1, k] += weight
    return matrix / matrix.sum(axis=1, keepdims=True)


def _reference(image: np.ndarray, scale: float) -> np.ndarray:
    rows, cols = _matlab_matrix(image.shape[0], scale), _matlab_matrix(image.shape[1], scale)
    return rows @ image @ cols.T


@pytest.mark.parametrize("scale", [2, 3, 4], ids=lambda s: f"x{s}")
@pytest.mark.parametrize("size", [(12, 24), (9, 6), (6, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_the_matlab_algorithm(scale: int, size: tuple[int, int]) -> None:
    height, width = size
    if height % scale or width % scale:
        pytest.skip("downscaling needs multiples of the scale")
    image = np.random.default_rng(0).random(size)
    x = torch.from_numpy(image)[None, None]
    down = bicubic_downscale(x, scale)[0, 0].numpy()
    np.testing.assert_allclose(down, _reference(image, 1 / scale), atol=1e-5)  # float32 weights
    up = bicubic_upscale(x, scale)[0, 0].numpy()
    np.testing.assert_allclose(up, _reference(image, scale), atol=1e-5)


def test_shapes_and_constants() -> None:
    x = torch.full((2, 3, 12, 8), 0.25)
    assert bicubic_downscale(x, 4).shape == (2, 3, 3, 2)
    assert torch.allclose(bicubic_downscale(x, 4), torch.tensor(0.25))
    assert bicubic_upscale(torch.rand(5, 7), 3).shape == (15, 21)  # (H, W) works too
    assert bicubic_upscale(torch.rand(0, 1, 4, 4), 2).shape == (0, 1, 8, 8)
    assert bicubic_upscale(torch.rand(1, 1, 1, 1), 2).shape == (1, 1, 2, 2)
    assert crop_to_scale(torch.zeros(1, 1, 10, 7), 3).shape == (1, 1, 9, 6)
    assert bicubic_degrade(torch.rand(3, 1, 10, 11), 3).shape == (3, 1, 10, 11)


def test_errors() -> None:
    with pytest.raises(ValueError, match="not a multiple of the scale 3"):
        bicubic_downscale(torch.rand(1, 1, 10, 9), 3)
    with pytest.raises(ValueError, match="scale must be an integer >= 1, got 2.5"):
        bicubic_upscale(torch.rand(1, 1, 4, 4), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float tensor"):
        bicubic_upscale(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="smaller than the scale"):
        crop_to_scale(torch.zeros(1, 1, 2, 8), 3)


def test_degradation_mixes_scales_and_is_reproducible() -> None:
    degrade = BicubicDegradation((2, 3, 4))
    x = torch.rand(12, 1, 24, 24)
    scales = degrade.draw(12, torch.Generator().manual_seed(1))
    assert set(scales.tolist()) == {2, 3, 4}
    out = degrade(x, torch.Generator().manual_seed(1))
    for index, scale in enumerate(scales.tolist()):
        expected = bicubic_degrade(x[index : index + 1], scale)[0]
        assert torch.allclose(out[index], expected, atol=1e-6)
    assert torch.equal(out, degrade(x, torch.Generator().manual_seed(1)))
    assert torch.equal(BicubicDegradation((3,))(x[:2]), bicubic_degrade(x[:2], 3))
    with pytest.raises(ValueError, match="at least one scale"):
        BicubicDegradation(())


@pytest.mark.parametrize("scale, published", [(2, 33.66), (3, 30.39), (4, 28.42)])
def test_set5_bicubic_protocol(shared_data: Path, scale: int, published: float) -> None:
    """Bicubic on Set5 gives the field's published Y-PSNR within 0.01 dB."""
    from n3net.eval.sr import evaluate_upscaler
    from n3net.inference import Upscaler

    upscaler = Upscaler("bicubic", scale)
    result = evaluate_upscaler(upscaler.upscale_y, shared_data / "set5", scale, progress=False)
    assert abs(result["summary"]["mean_psnr"] - published) < 0.01
