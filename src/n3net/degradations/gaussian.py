"""Additive white Gaussian noise on the 0-255 scale, drawn from a given generator.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GaussianNoise", "add_gaussian_noise"]


def add_gaussian_noise(
    x: Tensor, sigma: float | Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Add white Gaussian noise of standard deviation ``sigma / 255``, no clipping.

    The noise is drawn with ``torch.randn`` from ``generator`` (the global one only when None) on
    the generator's device, in ``x``'s dtype, and then moved to ``x``'s device.

    Args:
        x: clean images in [0, 1].
        sigma: noise level on the 0-255 scale; a float, or one value per sample.
        generator: random generator.

    Returns:
        ``x + noise``.

    Shape:
        x: (B, C, H, W) (or any (B, ...)); sigma: scalar or (B,) -> same shape as x.

    Example:
        >>> x = torch.zeros(2, 1, 3, 3)
        >>> noisy = add_gaussian_noise(x, torch.tensor([0.0, 25.0]), torch.Generator())
        >>> bool((noisy[0] == 0).all()), bool((noisy[1] != 0).any())
        (True, True)
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    if isinstance(sigma, Tensor) and sigma.ndim > 0:
        if sigma.shape != (x.shape[0],):
            raise ValueError(
                f"sigma must be a scalar or (B,) = ({x.shape[0]},), got {tuple(sigma.shape)}"
            )
        sigma = sigma.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return x + noise * (sigma / 255)


class GaussianNoise(nn.Module):
    """White Gaussian noise of a fixed level: ``x + sigma / 255 * N(0, 1)``, no clipping.

    Args:
        sigma: noise standard deviation on the 0-255 scale, >= 0.

    Shape:
        x: (B, C, H, W) (any shape works) -> same shape.

    Example:
        >>> noise = GaussianNoise(25.0)
        >>> x = torch.zeros(1, 1, 64, 64)
        >>> noisy = noise(x, torch.Generator().manual_seed(0))
        >>> round(float(noisy.std() * 255), 0)
        25.0
        >>> torch.equal(noisy, noise(x, torch.Generator().manual_seed(0)))  # same seed, same noise
        True
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return ``x`` plus noise drawn from ``generator`` (see :func:`add_gaussian_noise`)."""
        return add_gaussian_noise(x, self.sigma, generator)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}"
