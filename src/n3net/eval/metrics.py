"""Image-quality metrics: PSNR exactly as the authors computed it, and SSIM via scikit-image.

Layouts: torch tensors are (C, H, W) or (1, C, H, W) (or (H, W)); numpy arrays are (H, W) or
(H, W, C). Axis legend: ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from n3net._checks import require_extra

__all__ = ["psnr", "rgb_to_y", "ssim"]

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


# ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it, for R, G, B in [0, 1]: Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_Y_OFFSET = 16.0


def rgb_to_y(image: ArrayLike, data_range: float = 1.0, channel_axis: int = -3) -> np.ndarray:
    """Luma of RGB images as MATLAB's ``rgb2ycbcr`` (BT.601, 16-235), on the 0-1 scale.

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in [0, 1] (the input is
    divided by ``data_range`` first), so Y lies in [16/255, 235/255]. The super-resolution
    papers' Y-channel PSNR is computed on it with data range 1.

    Args:
        image: RGB values in [0, data_range].
        data_range: the input's peak value.
        channel_axis: the RGB axis (-3 for tensors (…, 3, H, W), -1 for arrays (H, W, 3)).

    Returns:
        The luma, with the channel axis removed, float64.

    Example:
        >>> rgb_to_y(np.ones((3, 1, 1))).item() * 255
        235.0
    """
    array = np.moveaxis(_as_float64(image), channel_axis, -1) / data_range
    if array.shape[-1] != 3:
        raise ValueError(f"rgb_to_y needs 3 channels on axis {channel_axis}, got {array.shape}")
    return (_Y_OFFSET + array @ _Y_WEIGHTS) / 255.0


def _shave(array: np.ndarray, border: int, spatial: tuple[int, int]) -> np.ndarray:
    """Drop ``border`` pixels on each side of the two spatial axes."""
    if border < 0:
        raise ValueError(f"shave must be >= 0, got {border}")
    if border == 0:
        return array
    index = [slice(None)] * array.ndim
    for axis in spatial:
        if array.shape[axis] <= 2 * border:
            raise ValueError(f"shave {border} leaves nothing of an axis of {array.shape[axis]} px")
        index[axis] = slice(border, array.shape[axis] - border)
    return array[tuple(index)]


def psnr(
    output: ArrayLike,
    target: ArrayLike,
    data_range: float = 1.0,
    *,
    y_channel: bool = False,
    shave: int = 0,
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / (mse + 1e-10))``.

    This is the authors' formula (the 1e-10 keeps identical images finite), computed in float64
    on the *unclipped* output, as in their evaluation. The mean is over every element.

    Args:
        output: estimate, e.g. the network's output.
        target: reference image.
        data_range: peak value, 1.0 for images in [0, 1].
        y_channel: compare the BT.601 luma of RGB images (:func:`rgb_to_y`, as MATLAB's
            ``rgb2ycbcr``), on the 0-1 scale (data range 1) whatever ``data_range``.
        shave: pixels dropped on each side of H and W before comparing (the super-resolution
            protocols shave the scale).

    Returns:
        PSNR in dB.

    Shape:
        output, target: any shape, the same for both; with ``y_channel`` or ``shave``,
        tensors (…, C, H, W) and arrays (H, W) or (H, W, C).

    Example:
        >>> round(psnr(torch.full((1, 1, 2, 2), 0.1), torch.zeros(1, 1, 2, 2)), 6)
        20.0
    """
    output_array, target_array = _as_float64(output), _as_float64(target)
    _check_same_shape(output_array, target_array)
    is_tensor = isinstance(output, Tensor)
    if y_channel:
        axis = -3 if is_tensor else -1
        output_array = rgb_to_y(output_array, data_range, axis)
        target_array = rgb_to_y(target_array, data_range, axis)
        data_range = 1.0
        spatial = (-2, -1) if is_tensor else (0, 1)
    else:
        spatial = (-2, -1) if is_tensor or output_array.ndim == 2 else (0, 1)
    output_array = _shave(output_array, shave, spatial)
    target_array = _shave(target_array, shave, spatial)
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
        MissingExtraError: scikit-image is missing (``pip install 'n3net[eval]'``).

    Shape:
        tensors (H, W), (C, H, W) or (1, C, H, W); arrays (H, W) or (H, W, C); the same for both.
    """
    structural_similarity = require_extra("skimage.metrics", "ssim").structural_similarity
    output_array, target_array = _as_float64(output), _as_float64(target)
    _check_same_shape(output_array, target_array)
    # Both follow the output's layout convention; their shapes are already known to agree.
    is_tensor = isinstance(output, Tensor)
    output_image, channel_axis = _to_image(np.clip(output_array, 0.0, 1.0), is_tensor)
    target_image, _ = _to_image(target_array, is_tensor)
    return float(
        structural_similarity(output_image, target_image, data_range=1.0, channel_axis=channel_axis)
    )
