"""YCbCr as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` compute it (ITU-R BT.601, studio range).

With R, G, B in [0, 1], ``rgb2ycbcr`` gives Y in [16, 235] and Cb, Cr in [16, 240] on the 0-255
scale; here every value stays on the 0-1 scale (divided by 255). The super-resolution protocol
measures PSNR and SSIM on this Y; the networks restore Y and the colour channels are upscaled
bicubically.

Axis legend: ``B`` batch, ``H, W`` image size; the colour axis is -3 (``(..., 3, H, W)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rgb_to_ycbcr", "rgb_to_ycbcr_y", "ycbcr_to_rgb"]

# Rows Y, Cb, Cr; columns R, G, B in [0, 1]; results on the 0-255 scale before the offset.
_MATRIX = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)
_OFFSET = (16.0, 128.0, 128.0)


def _matrix(like: Tensor) -> tuple[Tensor, Tensor]:
    dtype = like.dtype if like.is_floating_point() else torch.float32
    matrix = torch.tensor(_MATRIX, dtype=torch.float64) / 255.0
    offset = torch.tensor(_OFFSET, dtype=torch.float64) / 255.0
    return matrix.to(like.device, dtype), offset.to(like.device, dtype)


def _check_rgb(image: Tensor, name: str) -> None:
    if not isinstance(image, Tensor) or image.ndim < 3 or image.shape[-3] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{name} must be a (..., 3, H, W) tensor, got {shape}")


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """Convert RGB in [0, 1] to YCbCr on the 0-1 scale, as MATLAB's ``rgb2ycbcr`` (BT.601).

    Args:
        rgb: colour images in [0, 1].

    Returns:
        Y in [16/255, 235/255], Cb and Cr in [16/255, 240/255], unrounded.

    Shape:
        (..., 3, H, W) -> (..., 3, H, W).

    Example:
        >>> ycc = rgb_to_ycbcr(torch.ones(3, 1, 1))
        >>> [round(v * 255, 3) for v in ycc.flatten().tolist()]
        [235.0, 128.0, 128.0]
    """
    _check_rgb(rgb, "rgb")
    matrix, offset = _matrix(rgb)
    return torch.einsum("ij,...jhw->...ihw", matrix, rgb) + offset[:, None, None]


def rgb_to_ycbcr_y(rgb: Tensor) -> Tensor:
    """The Y channel of :func:`rgb_to_ycbcr`, keeping a channel axis of 1.

    Shape:
        (..., 3, H, W) -> (..., 1, H, W).

    Example:
        >>> round(rgb_to_ycbcr_y(torch.zeros(1, 3, 2, 2))[0, 0, 0, 0].item() * 255, 3)
        16.0
    """
    _check_rgb(rgb, "rgb")
    matrix, offset = _matrix(rgb)
    return torch.einsum("j,...jhw->...hw", matrix[0], rgb)[..., None, :, :] + offset[0]


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    """Invert :func:`rgb_to_ycbcr` (MATLAB's ``ycbcr2rgb``); values are not clipped.

    Shape:
        (..., 3, H, W) -> (..., 3, H, W).

    Example:
        >>> rgb = torch.rand(3, 4, 5)
        >>> bool(torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5))
        True
    """
    _check_rgb(ycbcr, "ycbcr")
    matrix, offset = _matrix(ycbcr)
    inverse = torch.linalg.inv(matrix.double()).to(matrix.dtype)
    return torch.einsum("ij,...jhw->...ihw", inverse, ycbcr - offset[:, None, None])
