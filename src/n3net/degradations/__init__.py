"""Degradations: how a clean sample becomes a network input, drawn from a ``torch.Generator``.

Each degradation is a small :class:`torch.nn.Module` without parameters whose ``forward`` takes
the clean tensor and the generator to draw from, so that training batches and validation pairs
are reproducible without touching torch's global generator. A task (:mod:`n3net.train.tasks`)
uses one to make its training pairs and validation inputs.

:class:`GaussianNoise` serves denoising and :class:`BicubicDegradation` (MATLAB-exact bicubic
down- and up-scaling) super-resolution. Adding one (heteroscedastic noise for real-noise
denoising): a new module here (``heteroscedastic.py``) with the class and a doctest, exported
below; a task then uses it.

Example:
    >>> import torch
    >>> noise = GaussianNoise(sigma=25.0)
    >>> noise(torch.zeros(2, 1, 4, 4), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 1, 4, 4])
"""

from n3net.degradations.bicubic import (
    BicubicDegradation,
    bicubic_degrade,
    bicubic_downscale,
    bicubic_upscale,
    crop_to_scale,
)
from n3net.degradations.gaussian import GaussianNoise, add_gaussian_noise

__all__ = [
    "BicubicDegradation",
    "GaussianNoise",
    "add_gaussian_noise",
    "bicubic_degrade",
    "bicubic_downscale",
    "bicubic_upscale",
    "crop_to_scale",
]
