"""Tests for n3net.eval.metrics: PSNR as the authors computed it, SSIM through scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from n3net.eval.metrics import psnr, ssim


class TestPsnrOptions:
    def test_y_channel_hand_values(self) -> None:
        # grey 0.5 against black: Y differs by (65.481 + 128.553 + 24.966) * 0.5 / 255
        #   = 219 * 0.5 / 255 = 0.429412 -> PSNR = -20 log10(0.429412) = 7.3423 dB
        output, target = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, 3, 4, 4)
        assert psnr(output, target, y_channel=True) == pytest.approx(7.3425, abs=1e-4)
        assert psnr(output, target, y_channel=True) == pytest.approx(
            -20 * math.log10(219 * 0.5 / 255), abs=1e-6
        )
        # pure red 1 against black: Y difference 65.481 / 255
        red = torch.zeros(3, 2, 2)
        red[0] = 1.0
        expected = -20 * math.log10(65.481 / 255)
        assert psnr(red, torch.zeros(3, 2, 2), y_channel=True) == pytest.approx(expected)
        # numpy (H, W, 3) in 0-255 gives the same number
        red_hwc = np.zeros((2, 2, 3))
        red_hwc[..., 0] = 255.0
        assert psnr(red_hwc, np.zeros((2, 2, 3)), 255.0, y_channel=True) == pytest.approx(expected)

    def test_rgb_to_y_is_matlab_rgb2ycbcr(self) -> None:
        from n3net.eval.metrics import rgb_to_y

        white, black = np.ones((1, 1, 3)), np.zeros((1, 1, 3))
        assert rgb_to_y(white, channel_axis=-1).item() * 255 == pytest.approx(235.0)
        assert rgb_to_y(black, channel_axis=-1).item() * 255 == pytest.approx(16.0)
        with pytest.raises(ValueError, match="needs 3 channels"):
            rgb_to_y(np.zeros((2, 2, 1)), channel_axis=-1)

    def test_shave_hand_values(self) -> None:
        # a 4 x 4 image: the inner 2 x 2 is off by 0.1, the border by 0.5
        target = torch.zeros(1, 1, 4, 4)
        output = torch.full((1, 1, 4, 4), 0.5)
        output[..., 1:3, 1:3] = 0.1
        assert psnr(output, target, shave=1) == pytest.approx(20.0, abs=1e-6)
        mse = (12 * 0.25 + 4 * 0.01) / 16
        assert psnr(output, target) == pytest.approx(10 * math.log10(1 / (mse + 1e-10)))
        assert psnr(output[0, 0].numpy(), target[0, 0].numpy(), shave=1) == pytest.approx(
            20.0, abs=1e-6
        )

    def test_shave_and_y_together(self) -> None:
        target = np.zeros((4, 4, 3))
        output = np.full((4, 4, 3), 1.0)
        output[1:3, 1:3] = 0.5
        assert psnr(output, target, y_channel=True, shave=1) == pytest.approx(
            -20 * math.log10(219 * 0.5 / 255)
        )

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="shave must be >= 0"):
            psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), shave=-1)
        with pytest.raises(ValueError, match="leaves nothing"):
            psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), shave=2)
        with pytest.raises(ValueError, match="needs 3 channels"):
            psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), y_channel=True)


class TestPsnr:
    def test_hand_values(self) -> None:
        target = torch.zeros(1, 1, 2, 2)
        assert psnr(torch.full((1, 1, 2, 2), 0.1), target) == pytest.approx(20.0, abs=1e-6)
        assert psnr(target, target) == pytest.approx(100.0)  # the 1e-10 keeps it finite
        # mse = (1 + 0 + 0 + 0) / 4 = 0.25 -> 10 log10(4)
        output = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        assert psnr(output, torch.zeros(2, 2)) == pytest.approx(10 * math.log10(4))

    def test_formula_exact(self) -> None:
        rng = np.random.default_rng(0)
        target, output = rng.random((9, 7)), rng.random((9, 7))
        mse = np.mean((output - target) ** 2)
        assert psnr(output, target) == 10 * math.log10(1 / (mse + 1e-10))
        assert psnr(output * 255, target * 255, data_range=255.0) == pytest.approx(
            10 * math.log10(255**2 / (mse * 255**2 + 1e-10)), rel=1e-12
        )

    @pytest.mark.parametrize("data_range", [1.0, 255.0])
    def test_against_skimage(self, data_range: float) -> None:
        rng = np.random.default_rng(1)
        target = rng.random((16, 16)) * data_range
        output = target + rng.normal(0, 0.05 * data_range, target.shape)
        ours = psnr(torch.from_numpy(output), torch.from_numpy(target), data_range=data_range)
        reference = peak_signal_noise_ratio(target, output, data_range=data_range)
        assert ours == pytest.approx(reference, abs=1e-6)

    def test_float64_and_unclipped(self) -> None:
        target = torch.full((4, 4), 0.5, dtype=torch.float32)
        output = target + 0.6  # above 1, not clipped
        assert psnr(output, target) == pytest.approx(10 * math.log10(1 / 0.36), rel=1e-6)

    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            psnr(torch.zeros(2, 2), torch.zeros(2, 3))


class TestSsim:
    def test_grey_tensor_matches_skimage(self) -> None:
        rng = np.random.default_rng(2)
        target = rng.random((32, 32))
        output = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
        ours = ssim(torch.from_numpy(output)[None, None], torch.from_numpy(target)[None, None])
        assert ours == pytest.approx(structural_similarity(output, target, data_range=1.0))

    def test_identical_is_one(self) -> None:
        x = torch.rand(1, 1, 16, 16)
        assert ssim(x, x) == pytest.approx(1.0)

    def test_output_clipped(self) -> None:
        rng = np.random.default_rng(3)
        target = rng.random((24, 24))
        output = target + rng.normal(0, 0.2, target.shape)
        reference = structural_similarity(np.clip(output, 0, 1), target, data_range=1.0)
        assert ssim(output, target) == pytest.approx(reference)

    def test_colour_layouts(self) -> None:
        rng = np.random.default_rng(4)
        target = rng.random((20, 20, 3))
        output = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
        reference = structural_similarity(output, target, data_range=1.0, channel_axis=2)
        assert ssim(output, target) == pytest.approx(reference)
        as_tensor = torch.from_numpy(output).permute(2, 0, 1)[None]
        target_tensor = torch.from_numpy(target).permute(2, 0, 1)[None]
        assert ssim(as_tensor, target_tensor) == pytest.approx(reference)

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError, match="one grey or colour image"):
            ssim(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
