"""Tests for n3net.eval.classic: BM3D and non-local means behind the denoiser interface."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from n3net.eval.classic import bm3d_denoise, nlm_denoise
from n3net.eval.metrics import psnr


def _smooth_image(size: int = 32) -> Tensor:
    """A smooth 32 x 32 test image in [0.1, 0.9] (gradient plus a bright square)."""
    ramp = torch.linspace(0.1, 0.6, size)
    x = (ramp[:, None] + ramp[None, :]) / 2
    x[8:20, 10:24] += 0.3
    return x[None, None]


@pytest.mark.parametrize("denoise", [bm3d_denoise, nlm_denoise], ids=["bm3d", "nlm"])
class TestClassic:
    def test_improves_psnr(self, denoise: Callable[[Tensor, float], Tensor]) -> None:
        clean = _smooth_image()
        noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * (
            25 / 255
        )
        out = denoise(noisy, 25.0)
        assert out.shape == noisy.shape and out.dtype == torch.float32
        assert psnr(out, clean) > psnr(noisy, clean) + 3

    def test_batch_and_channels(self, denoise: Callable[[Tensor, float], Tensor]) -> None:
        noisy = torch.rand(2, 2, 16, 16, dtype=torch.float64)
        out = denoise(noisy, 10.0)
        assert out.shape == noisy.shape and out.dtype == torch.float64

    def test_errors(self, denoise: Callable[[Tensor, float], Tensor]) -> None:
        with pytest.raises(ValueError, match=r"noisy must be \(B, C, H, W\)"):
            denoise(torch.rand(16, 16), 25.0)
        with pytest.raises(ValueError, match="sigma must be > 0"):
            denoise(torch.rand(1, 1, 16, 16), 0.0)
