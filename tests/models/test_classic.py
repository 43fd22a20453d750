"""Tests for n3net.models.classic: BM3D and non-local means as models of the registry."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import Tensor

from n3net._checks import MissingExtraError
from n3net.eval.metrics import psnr
from n3net.inference import Denoiser, geometry
from n3net.models import BM3D, NLM, arch_info, create_model, list_architectures, load_model


def _smooth_image(size: int = 32) -> Tensor:
    """A smooth 32 x 32 test image in [0.1, 0.9] (gradient plus a bright square)."""
    ramp = torch.linspace(0.1, 0.6, size)
    x = (ramp[:, None] + ramp[None, :]) / 2
    x[8:20, 10:24] += 0.3
    return x[None, None]


@pytest.mark.parametrize("name", ["bm3d", "nlm"])
class TestClassic:
    def test_registered_without_weights(self, name: str) -> None:
        assert name in list_architectures()
        info = arch_info(name)
        assert not info.needs_weights and info.conditions == ("sigma",)
        model = load_model(name, sigma=50)
        assert isinstance(model, BM3D if name == "bm3d" else NLM)
        assert model.sigma == 50.0 and not model.training
        assert create_model(name).sigma == 25.0

    def test_improves_psnr(self, name: str) -> None:
        clean = _smooth_image()
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
        noisy = clean + noise * (25 / 255)
        out = create_model(name, sigma=25)(noisy)
        assert out.shape == noisy.shape and out.dtype == torch.float32
        assert psnr(out, clean) > psnr(noisy, clean) + 3

    def test_batch_and_channels(self, name: str) -> None:
        noisy = torch.rand(2, 2, 16, 16, dtype=torch.float64)
        out = create_model(name, sigma=10)(noisy)
        assert out.shape == noisy.shape and out.dtype == torch.float64

    def test_denoiser_tells_it_the_sigma(self, name: str) -> None:
        den = Denoiser(name, sigma=50)
        assert den.sigma == 50.0 and den.module.sigma == 50.0
        assert Denoiser(name).sigma == 25.0
        assert geometry(den.module).receptive_radius == (32 if name == "bm3d" else 8)

    def test_errors(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        with pytest.raises(ValueError, match=r"noisy must be \(B, C, H, W\)"):
            create_model(name)(torch.rand(16, 16))
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            create_model(name, sigma=0.0)
        with pytest.raises(ValueError, match="takes no depth"):
            load_model(name, depth=3)
        module = "bm3d" if name == "bm3d" else "skimage.restoration"
        monkeypatch.setitem(sys.modules, module, None)  # the eval extra is missing
        with pytest.raises(MissingExtraError, match=r"pip install 'n3net\[eval\]'"):
            create_model(name)


def test_nlm_in_the_public_api() -> None:
    rng = np.random.default_rng(0)
    noisy = np.clip(0.5 + rng.normal(0, 0.1, (24, 20)), 0, 1).astype(np.float32)
    from n3net import denoise

    out = denoise(noisy, sigma=25, model="nlm")
    assert out.shape == noisy.shape
    assert np.abs(out - 0.5).mean() < np.abs(noisy - 0.5).mean()
