"""Convert user images (numpy arrays, tensors) to the models' (B, C, H, W) floats and back.

Value ranges: integer images are scaled by their maximum (uint8: 255, uint16: 65535); float
images must already lie on the [0, 1] scale. A float image with values above
:data:`FLOAT_MAX` is refused (a 0-255 float image would otherwise come back almost white);
unclipped noisy images in [0, 1] stay well below it even at sigma 70.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["FLOAT_MAX", "to_planes"]

# Largest value accepted in a float image: noise of sigma 70 pushes [0, 1] images to about 2.
FLOAT_MAX = 3.0
_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

Restore = Callable[[Tensor, bool], Any]


def _check_values(values: Tensor, is_float: bool) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError("image contains NaN or infinite values")
    if is_float and values.numel() and float(values.max()) > FLOAT_MAX:
        raise ValueError(
            f"float images must be on the [0, 1] scale, got values up to {float(values.max()):g}; "
            "divide a 0-255 image by 255 (or pass it as uint8)"
        )


def to_planes(image: Any) -> tuple[Tensor, Restore]:
    """Convert an image to (B, C, H, W) float32 and return a function converting back.

    The returned ``restore(out, clip)`` gives ``out`` the input's type, layout and dtype
    (integers are clipped and rounded; floats clipped to [0, 1] when ``clip``).
    """
    if isinstance(image, Tensor):
        return _tensor_to_planes(image)
    if isinstance(image, np.ndarray):
        return _array_to_planes(image)
    raise ValueError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")


def _tensor_to_planes(image: Tensor) -> tuple[Tensor, Restore]:
    if image.ndim not in (3, 4):
        raise ValueError(f"a tensor image must be (C, H, W) or (B, C, H, W), got {image.shape}")
    if image.dtype == torch.uint8:
        planes, scale = image.float() / 255.0, 255.0
    elif image.is_floating_point():
        planes, scale = image.float(), None
    else:
        raise ValueError(f"a tensor image must be float in [0, 1] or uint8, got {image.dtype}")
    _check_values(planes, scale is None)
    batched = planes if image.ndim == 4 else planes[None]

    def restore(out: Tensor, clip: bool) -> Tensor:
        out = out if image.ndim == 4 else out[0]
        if scale is not None:
            return (out.clamp(0.0, 1.0) * scale).round().to(image.dtype)
        return (out.clamp(0.0, 1.0) if clip else out).to(image.dtype)

    return batched, restore


def _array_to_planes(image: np.ndarray) -> tuple[Tensor, Restore]:
    scale = _INTEGER_MAX.get(image.dtype)
    if scale is None and image.dtype.kind != "f":
        raise ValueError(
            f"a numpy image must be uint8, uint16 or float in [0, 1], got dtype {image.dtype}"
        )
    if image.ndim == 2:
        colour, alpha = image[:, :, None], None
    elif image.ndim == 3 and image.shape[2] in (1, 3):
        colour, alpha = image, None
    elif image.ndim == 3 and image.shape[2] in (2, 4):  # grey + alpha, RGBA: alpha kept as is
        colour, alpha = image[:, :, :-1], image[:, :, -1:]
    else:
        raise ValueError(
            f"a numpy image must be (H, W) or (H, W, C) with C in 1..4, got shape {image.shape}"
        )
    values = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32))
    if scale is not None:
        values = values / scale
    _check_values(values, scale is None)
    planes = values.permute(2, 0, 1)[None]  # (1, C, H, W)

    def restore(out: Tensor, clip: bool) -> np.ndarray:
        result = out[0].permute(1, 2, 0).cpu().double().numpy()  # (H, W, C)
        if scale is not None:
            result = np.round(np.clip(result, 0.0, 1.0) * scale)
        elif clip:
            result = np.clip(result, 0.0, 1.0)
        result = result.astype(image.dtype)
        if alpha is not None:
            if result.shape[:2] != alpha.shape[:2]:  # a model changing the size: alpha resized
                raise ValueError("images with alpha need a model keeping the image size")
            result = np.concatenate([result, alpha], axis=2)
        return result[:, :, 0] if image.ndim == 2 else result

    return planes, restore
