"""The authors' Gaussian-denoising evaluation protocol, reproduced bit for bit.

What the authors did (and what makes our noisy images identical to theirs):

1. Images of a folder in sorted file-name order, each read as
   ``PIL.Image.open(f).convert("RGB").convert("L", (0.2989, 0.5870, 0.1140, 0))`` and scaled by
   1/255 to float32.
2. ``torch.manual_seed(1234)`` once per folder, before the first image; then for each image
   ``noise = torch.zeros_like(x).normal_(0, 1) * sigma / 255`` drawn on the CPU in float32, and
   ``noisy = x + noise`` without clipping or quantisation.

Training code should not touch the global generator: use :func:`add_gaussian_noise` (from
:mod:`n3net.degradations`) with its own ``torch.Generator`` instead.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from n3net.data.imageio import list_images
from n3net.degradations.gaussian import add_gaussian_noise  # re-exported: training noise

__all__ = [
    "GRAY_MATRIX",
    "PROTOCOL_SEED",
    "ProtocolNoise",
    "add_gaussian_noise",
    "iter_protocol",
    "load_gray_protocol",
]

GRAY_MATRIX = (0.2989, 0.5870, 0.1140, 0)
PROTOCOL_SEED = 1234


def load_gray_protocol(path: str | os.PathLike) -> Tensor:
    """Read an image as the authors did: RGB, then grey with their matrix, uint8, / 255.

    EXIF orientation is deliberately ignored, as in the authors' code.

    Args:
        path: image file.

    Returns:
        Grey intensities in [0, 1].

    Shape:
        (1, 1, H, W) float32.
    """
    with Image.open(path) as image:
        grey = image.convert("RGB").convert("L", GRAY_MATRIX)
    array = np.asarray(grey, dtype=np.uint8).astype(np.float32) / 255.0
    return torch.from_numpy(array)[None, None]


class ProtocolNoise:
    """The authors' noise stream: seed the global CPU generator once, then draw image by image.

    Creating the object calls ``torch.manual_seed(seed)``, which resets torch's *global* CPU
    generator (and, as ``torch.manual_seed`` does, every CUDA device's). That side effect is
    deliberate: the authors seeded the global generator and drew with ``normal_`` from it, and only
    the same calls reproduce their noise exactly. Consequently anything else that draws from the
    global generator between two :meth:`next_noisy` calls changes the following images' noise;
    the networks' eval-mode forward passes draw nothing.

    Args:
        seed: the seed; the authors used 1234.

    Example:
        >>> noise = ProtocolNoise(1234)
        >>> noise.next_noisy(torch.zeros(1, 1, 4, 4), 25.0).shape
        torch.Size([1, 1, 4, 4])
    """

    def __init__(self, seed: int = PROTOCOL_SEED) -> None:
        self.seed = seed
        torch.manual_seed(seed)

    def next_noisy(self, x: Tensor, sigma: float) -> Tensor:
        """Return ``x`` plus the next noise draw of standard deviation ``sigma / 255``.

        The noise is drawn on the CPU in float32 exactly as the authors did
        (``torch.zeros_like(x).normal_(0, 1) * sigma / 255``) and then moved to ``x``'s device
        and dtype. No clipping.

        Args:
            x: clean image in [0, 1].
            sigma: noise standard deviation on the 0-255 scale.

        Shape:
            x: (B, C, H, W) (any shape works) -> same shape.
        """
        noise = torch.zeros(x.shape, dtype=torch.float32).normal_(0, 1) * sigma / 255
        return x + noise.to(device=x.device, dtype=x.dtype)


def iter_protocol(
    folder: str | os.PathLike, sigma: float, seed: int = PROTOCOL_SEED
) -> Iterator[tuple[str, Tensor, Tensor]]:
    """Yield the authors' (clean, noisy) test pairs of a folder, in sorted file-name order.

    The global generator is seeded (see :class:`ProtocolNoise`) when iteration starts, i.e. on the
    first ``next``; consume the pairs in order without drawing from it in between.

    Args:
        folder: image folder (png, jpg, jpeg, tif, tiff, bmp).
        sigma: noise level on the 0-255 scale.
        seed: the seed; the authors used 1234.

    Yields:
        ``(file_name, clean, noisy)``.

    Shape:
        clean, noisy: (1, 1, H, W) float32 on the CPU.
    """
    files = list_images(folder)
    noise = ProtocolNoise(seed)
    for path in files:
        clean = load_gray_protocol(path)
        yield path.name, clean, noise.next_noisy(clean, sigma)
