"""Gaussian noise: the exact draws, per-sample levels, generator devices, errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from n3net.data.protocol import add_gaussian_noise as protocol_noise
from n3net.degradations import GaussianNoise, add_gaussian_noise


def test_draws_randn_from_the_generator() -> None:
    x = torch.rand(2, 1, 5, 7)
    noisy = GaussianNoise(15.0)(x, torch.Generator().manual_seed(4))
    expected = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(4)) * (15.0 / 255)
    assert torch.equal(noisy, expected)
    assert protocol_noise is add_gaussian_noise  # evaluation and training share it


def test_global_generator_untouched() -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    GaussianNoise(25.0)(torch.zeros(3, 3), torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)


def test_per_sample_sigma_and_zero() -> None:
    x = torch.zeros(3, 1, 16, 16)
    noisy = add_gaussian_noise(x, torch.tensor([0.0, 10.0, 50.0]), torch.Generator())
    assert torch.equal(noisy[0], x[0])
    assert noisy[1].std() < noisy[2].std()
    assert torch.equal(GaussianNoise(0)(x, torch.Generator()), x)


def test_errors_and_pickling() -> None:
    with pytest.raises(ValueError, match="sigma must be >= 0, got -1"):
        GaussianNoise(-1)
    with pytest.raises(ValueError, match=r"sigma must be a scalar or \(B,\) = \(2,\)"):
        add_gaussian_noise(torch.zeros(2, 1, 3, 3), torch.ones(3))
    noise = pickle.loads(pickle.dumps(GaussianNoise(25.0)))  # DataLoader workers get a copy
    assert noise.sigma == 25.0 and "sigma=25" in repr(noise)


def test_noise_on_the_generators_device_if_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    x = torch.zeros(1, 1, 8, 8)
    noisy = GaussianNoise(25.0)(x, torch.Generator(device="cuda").manual_seed(0))
    assert noisy.device == x.device and noisy.std() > 0
