"""Tests for n3net.data.protocol: the authors' grey conversion and noise stream, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.data.protocol import (
    GRAY_MATRIX,
    ProtocolNoise,
    add_gaussian_noise,
    iter_protocol,
    load_gray_protocol,
)


def _rgb(seed: int, height: int = 12, width: int = 17) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class TestLoadGray:
    def test_matches_pil_and_formula(self, tmp_path: Path) -> None:
        pixels = _rgb(0)
        Image.fromarray(pixels).save(tmp_path / "a.png")
        x = load_gray_protocol(tmp_path / "a.png")
        assert x.shape == (1, 1, 12, 17) and x.dtype == torch.float32
        pil = np.asarray(Image.fromarray(pixels).convert("L", GRAY_MATRIX))
        np.testing.assert_array_equal(x[0, 0].numpy(), pil.astype(np.float32) / 255)
        # Pillow's matrix conversion: weighted sum plus 0.5, truncated.
        weights = np.array(GRAY_MATRIX[:3])
        formula = np.floor(pixels.astype(np.float64) @ weights + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(pil, formula)

    def test_differs_from_default_convert(self, tmp_path: Path) -> None:
        pixels = _rgb(1, 64, 64)
        Image.fromarray(pixels).save(tmp_path / "a.png")
        ours = load_gray_protocol(tmp_path / "a.png")[0, 0].numpy()
        default = np.asarray(Image.fromarray(pixels).convert("L")).astype(np.float32) / 255
        assert not np.array_equal(ours, default)

    def test_grey_input_unchanged(self, tmp_path: Path) -> None:
        grey = _rgb(2)[:, :, 0]
        Image.fromarray(grey).save(tmp_path / "g.png")
        x = load_gray_protocol(tmp_path / "g.png")
        np.testing.assert_array_equal(x[0, 0].numpy() * 255, grey.astype(np.float32))


class TestProtocolNoise:
    def test_reproducible(self) -> None:
        x = torch.rand(1, 1, 20, 30)
        first = ProtocolNoise(1234)
        a1, a2 = first.next_noisy(x, 25.0), first.next_noisy(x, 50.0)
        torch.rand(5)  # the stream restarts with every new object
        second = ProtocolNoise(1234)
        b1, b2 = second.next_noisy(x, 25.0), second.next_noisy(x, 50.0)
        assert torch.equal(a1, b1) and torch.equal(a2, b2)
        assert not torch.equal(a1 - x, (a2 - x) / 2)

    def test_equals_authors_code(self) -> None:
        images = [torch.rand(1, 1, 9, 11), torch.rand(1, 1, 32, 32), torch.rand(1, 1, 5, 7)]
        torch.manual_seed(1234)
        expected = []
        for x in images:
            noise = torch.zeros_like(x).normal_(0, 1) * 25.0 / 255
            expected.append(x + noise)
        stream = ProtocolNoise(1234)
        for x, want in zip(images, expected, strict=True):
            assert torch.equal(stream.next_noisy(x, 25.0), want)

    def test_first_value(self) -> None:
        torch.manual_seed(1234)
        first = torch.zeros(1).normal_(0, 1).item()
        noisy = ProtocolNoise(1234).next_noisy(torch.zeros(1, 1, 1, 1), 255.0)
        assert noisy.item() == pytest.approx(first, abs=0)

    def test_no_clipping_and_float32(self) -> None:
        noisy = ProtocolNoise().next_noisy(torch.zeros(1, 1, 64, 64), 50.0)
        assert noisy.dtype == torch.float32 and noisy.min() < 0


class TestAddGaussianNoise:
    def test_generator_reproducible(self) -> None:
        x = torch.rand(2, 1, 8, 8)
        a = add_gaussian_noise(x, 25.0, torch.Generator().manual_seed(3))
        b = add_gaussian_noise(x, 25.0, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and a.shape == x.shape

    def test_per_sample_sigma(self) -> None:
        x = torch.zeros(3, 1, 64, 64)
        sigma = torch.tensor([0.0, 10.0, 50.0])
        noisy = add_gaussian_noise(x, sigma, torch.Generator().manual_seed(0))
        assert torch.equal(noisy[0], x[0])
        stds = noisy[1:].flatten(1).std(dim=1) * 255
        torch.testing.assert_close(stds, sigma[1:], rtol=0.1, atol=0)
        assert noisy.min() < 0  # no clipping

    def test_matches_scaled_randn(self) -> None:
        x = torch.rand(2, 3, 4, 5)
        noisy = add_gaussian_noise(x, 15.0, torch.Generator().manual_seed(7))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(noisy, x + noise * 15.0 / 255)

    def test_bad_sigma_shape(self) -> None:
        with pytest.raises(ValueError, match=r"sigma must be a scalar or \(B,\)"):
            add_gaussian_noise(torch.zeros(2, 1, 4, 4), torch.ones(3))


def test_iter_protocol(tmp_path: Path) -> None:
    for i, name in enumerate(["b.png", "a.png", "c.jpg"]):
        Image.fromarray(_rgb(i)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    pairs = list(iter_protocol(tmp_path, 25.0))
    assert [name for name, _, _ in pairs] == ["a.png", "b.png", "c.jpg"]
    # Same as seeding once and walking the sorted folder by hand.
    torch.manual_seed(1234)
    for name, clean, noisy in pairs:
        x = load_gray_protocol(tmp_path / name)
        assert torch.equal(clean, x)
        assert torch.equal(noisy, x + torch.zeros_like(x).normal_(0, 1) * 25.0 / 255)


def test_set12_first_image(shared_data: Path) -> None:
    name, clean, noisy = next(iter_protocol(shared_data / "set12", 25.0))
    assert name == "01.png" and clean.shape == (1, 1, 256, 256)
    grey = np.asarray(Image.open(shared_data / "set12" / "01.png").convert("L"))
    np.testing.assert_array_equal(clean[0, 0].numpy() * 255, grey.astype(np.float32))
    mse = torch.mean((noisy - clean) ** 2).item()
    assert 10 * np.log10(1 / mse) == pytest.approx(20.17, abs=0.05)
