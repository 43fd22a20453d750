"""Image-quality metrics: PSNR exactly as the authors computed it, and SSIM via scikit-image.

Layouts: torch tensors are (C, H, W) or (1, C, H, W) (or (H, W)); numpy arrays are (H, W) or
(H, W, C). Axis legend: ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["psnr", "ssim"]

ArrayLike = Tensor | np.ndarray


def _as_float64(value: ArrayLike) -> np.ndarray:
    """Return a float64 numpy copy of a tensor or array."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _check_same_shape(output: np.ndarray, target: np.ndarray) -> None:
    if output.shape != target.shape:
        raise ValueError(
            f"output and target must have the same shape, got {output.shape} and {target.shape}"
        )


def psnr(output: ArrayLike, target: ArrayLike, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / (mse + 1e-10))``.

    This is the authors' formula (the 1e-10 keeps identical images finite), computed in float64
    on the *unclipped* output, as in their evaluation. The mean is over every element.

    Args:
        output: estimate, e.g. the network's output.
        target: reference image.
        data_range: peak value, 1.0 for images in [0, 1].

    Returns:
        PSNR in dB.

    Shape:
        output, target: any shape, the same for both.

    Example:
        >>> round(psnr(torch.full((1, 1, 2, 2), 0.1), torch.zeros(1, 1, 2, 2)), 6)
        20.0
    """
    output_array, target_array = _as_float64(output), _as_float64(target)
    _check_same_shape(output_array, target_array)
    mse = float(np.mean((output_array - target_array) ** 2))
    return 10.0 * math.log10(data_range**2 / (mse + 1e-10))


def _to_image(array: np.ndarray, is_tensor: bool) -> tuple[np.ndarray, int | None]:
    """Squeeze to (H, W) or (H, W, C) and return the channel axis for scikit-image."""
    if is_tensor:
        while array.ndim > 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3:
            array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return array, None
    if array.ndim == 3:
        return array, 2
    raise ValueError(f"ssim needs one grey or colour image, got shape {array.shape}")


def ssim(output: ArrayLike, target: ArrayLike) -> float:
    """Structural similarity via ``skimage.metrics.structural_similarity``, data range 1.

    The output is clipped to [0, 1] first (the target is assumed to lie there): SSIM's constants
    assume the data range, and the authors' unclipped outputs overshoot it slightly. scikit-image's
    defaults are used (7x7 uniform window, sample covariance); colour images are compared per
    channel and averaged.

    Args:
        output: estimate, values nominally in [0, 1].
        target: reference image in [0, 1].

    Returns:
        Mean SSIM.

    Raises:
        ImportError: scikit-image is missing (``pip install n3net[eval]``).

    Shape:
        tensors (H, W), (C, H, W) or (1, C, H, W); arrays (H, W) or (H, W, C); the same for both.
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("ssim needs scikit-image; install n3net[eval]") from error
    output_array, target_array = _as_float64(output), _as_float64(target)
    _check_same_shape(output_array, target_array)
    # Both follow the output's layout convention; their shapes are already known to agree.
    is_tensor = isinstance(output, Tensor)
    output_image, channel_axis = _to_image(np.clip(output_array, 0.0, 1.0), is_tensor)
    target_image, _ = _to_image(target_array, is_tensor)
    return float(
        structural_similarity(output_image, target_image, data_range=1.0, channel_axis=channel_axis)
    )
