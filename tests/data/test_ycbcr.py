"""YCbCr as MATLAB's rgb2ycbcr: known values, the inverse, agreement with the metrics' luma."""

from __future__ import annotations

import pytest
import torch

from n3net.data.ycbcr import rgb_to_ycbcr, rgb_to_ycbcr_y, ycbcr_to_rgb
from n3net.eval.metrics import rgb_to_y


def test_known_values() -> None:
    # MATLAB: rgb2ycbcr([1 0 0]) = [81.481 90.203 240] / 255 on the 0-255 scale.
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    values = (rgb_to_ycbcr(red).flatten() * 255).tolist()
    assert values == pytest.approx([81.481, 90.203, 240.0], abs=1e-4)
    black = rgb_to_ycbcr(torch.zeros(1, 3, 1, 1)).flatten() * 255
    assert black.tolist() == pytest.approx([16.0, 128.0, 128.0], abs=1e-4)


def test_inverse_and_y() -> None:
    rgb = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-10)
    y = rgb_to_ycbcr_y(rgb)
    assert y.shape == (2, 1, 5, 4)
    assert torch.allclose(y[:, 0], rgb_to_ycbcr(rgb)[:, 0])
    assert torch.allclose(y[:, 0], torch.from_numpy(rgb_to_y(rgb)), atol=1e-12)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"rgb must be a \(\.\.\., 3, H, W\) tensor"):
        rgb_to_ycbcr(torch.zeros(1, 4, 2, 2))
