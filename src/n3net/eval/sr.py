"""The super-resolution benchmark protocol (Y-channel PSNR / SSIM), as the field measures it.

Per image of a folder, in sorted file-name order, for a scale ``s``:

1. read the image (8-bit), crop it to a multiple of ``s`` (bottom and right, MATLAB's
   ``modcrop``) and take its luminance: Y of MATLAB's ``rgb2ycbcr`` (BT.601, 16-235) of the RGB
   values / 255, unrounded; a grey image is its own luminance;
2. the low-resolution input is MATLAB's antialiased bicubic ``imresize(Y, 1 / s)`` of that
   float luminance (:mod:`n3net.degradations.bicubic`);
3. the model upscales it (``upscale_fn``: bicubic, then the network on the luminance);
4. output and reference are rounded to 8 bits (``uint8(255 Y)``; the output clipped first),
   ``s`` pixels are shaved off every border, and PSNR (peak 255) and SSIM are computed on what
   is left. SSIM is Wang et al.'s (Gaussian window of sigma 1.5, 11x11, K = 0.01 / 0.03, the
   local means over valid windows), via scikit-image.

This gives the published bicubic numbers on Set5 (33.66 / 30.39 / 28.42 dB at ×2 / ×3 / ×4).

Axis legend: ``H, W`` image size, ``s`` the scale.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from n3net._checks import require_extra
from n3net.data.ycbcr import rgb_to_ycbcr_y
from n3net.degradations.bicubic import bicubic_downscale, crop_to_scale

__all__ = [
    "PROTOCOL_TEXT",
    "evaluate_upscaler",
    "load_sr_pair",
    "quantise",
    "sr_psnr",
    "sr_ssim",
]

PROTOCOL_TEXT = (
    "images in sorted order, cropped to a multiple of the scale; luminance Y of MATLAB's "
    "rgb2ycbcr (BT.601) of RGB / 255, unrounded (grey images as they are); LR = MATLAB "
    "antialiased bicubic imresize(Y, 1/scale); output clipped and rounded to 8 bits, reference "
    "rounded to 8 bits; scale pixels shaved at every border; PSNR with peak 255; SSIM of Wang "
    "et al. (Gaussian sigma 1.5, scikit-image)"
)


def load_luminance(path: str | os.PathLike) -> Tensor:
    """Read an 8-bit image's luminance in [0, 1], unrounded (grey images as they are).

    Shape:
        (1, 1, H, W) float32 (float64 arithmetic, stored as float32).
    """
    with Image.open(path) as image:
        grey = image.mode in ("L", "I;16", "I")
        array = np.asarray(image.convert("L") if grey else image.convert("RGB"), dtype=np.float64)
    values = torch.from_numpy(array / 255.0)
    if grey:
        return values[None, None].float()
    return rgb_to_ycbcr_y(values.permute(2, 0, 1)[None]).float()


def load_sr_pair(path: str | os.PathLike, scale: int) -> tuple[Tensor, Tensor]:
    """The protocol's (low-resolution input, high-resolution reference) luminance of an image.

    Shape:
        -> (1, 1, H / s, W / s), (1, 1, H, W) after cropping H, W to multiples of s.
    """
    reference = crop_to_scale(load_luminance(path), scale)
    return bicubic_downscale(reference.double(), scale).float(), reference


def quantise(y: Tensor) -> Tensor:
    """Clip to [0, 1] and round to 8 bits (MATLAB's ``uint8(255 * y)``), back on the 0-1 scale.

    Example:
        >>> quantise(torch.tensor([-0.1, 0.5, 1.2])).mul(255).tolist()
        [0.0, 128.0, 255.0]
    """
    return y.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


def _shaved(output: Tensor, reference: Tensor, shave: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images rounded to 8 bits (0-255 floats), ``shave`` pixels dropped per border."""
    if tuple(output.shape) != tuple(reference.shape):
        raise ValueError(
            f"output must have the reference's shape {tuple(reference.shape)}, "
            f"got {tuple(output.shape)}"
        )
    height, width = reference.shape[-2:]
    if min(height, width) <= 2 * shave:
        raise ValueError(f"shave {shave} leaves nothing of a {height}x{width} image")

    def plane(y: Tensor) -> np.ndarray:
        values = quantise(y.detach().to("cpu", torch.float64)).mul(255.0)
        return (
            values[..., shave : height - shave, shave : width - shave]
            .reshape(height - 2 * shave, width - 2 * shave)
            .numpy()
        )

    return plane(output), plane(reference)


def sr_psnr(output: Tensor, reference: Tensor, shave: int) -> float:
    """Y-PSNR of the protocol: both rounded to 8 bits, ``shave`` border pixels dropped.

    Shape:
        output, reference: (1, 1, H, W), the same.

    Example:
        >>> reference = torch.full((1, 1, 8, 8), 100 / 255)
        >>> round(sr_psnr(reference + 10 / 255, reference, shave=2), 2)
        28.13
    """
    out, ref = _shaved(output, reference, shave)
    mse = float(np.mean((out - ref) ** 2))
    return 10.0 * math.log10(255.0**2 / mse) if mse > 0 else math.inf


def sr_ssim(output: Tensor, reference: Tensor, shave: int) -> float:
    """SSIM of the protocol (Wang et al.'s Gaussian-window SSIM on the 8-bit luminance).

    Raises:
        MissingExtraError: scikit-image is missing (``pip install 'n3net[eval]'``).

    Shape:
        output, reference: (1, 1, H, W), the same.
    """
    metrics = require_extra("skimage.metrics", "the super-resolution SSIM")
    out, ref = _shaved(output, reference, shave)
    return float(
        metrics.structural_similarity(
            out,
            ref,
            data_range=255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def evaluate_upscaler(
    upscale_fn: Callable[[Tensor], Tensor],
    folder: str | os.PathLike,
    scale: int,
    progress: bool = True,
    *,
    device: str | torch.device = "cpu",
    description: str | None = None,
) -> dict[str, Any]:
    """Evaluate a super-resolution model on an image folder under the protocol above.

    Args:
        upscale_fn: maps the low-resolution luminance (1, 1, H / s, W / s) on ``device`` to
            the high-resolution estimate (1, 1, H, W), e.g. ``Upscaler(...).upscale_y``.
        folder: benchmark image folder (Set5, Set14, B100, ...).
        scale: the integer factor.
        progress: show a progress bar on stderr.
        device: where the input is sent.
        description: progress-bar label.

    Returns:
        ``{"summary": {"mean_psnr", "mean_ssim", "n_images"}, "rows": [{"name", "psnr",
        "ssim", "seconds"}, ...]}``, rows in protocol order; PSNR and SSIM on the Y channel.
    """
    from tqdm import tqdm

    from n3net.eval.benchmarks import protocol_files

    files = protocol_files(folder)
    device = torch.device(device)
    label = description or f"{Path(folder).name} x{scale}"
    rows: list[dict[str, Any]] = []
    for path in tqdm(files, desc=label, unit="img", disable=not progress, leave=False):
        lr, reference = load_sr_pair(path, scale)
        start = time.perf_counter()
        with torch.inference_mode():
            output = upscale_fn(lr.to(device)).detach().to("cpu")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "name": path.name,
                "psnr": sr_psnr(output, reference, scale),
                "ssim": sr_ssim(output, reference, scale),
                "seconds": seconds,
            }
        )
    count = len(rows)
    summary = {
        "mean_psnr": math.fsum(r["psnr"] for r in rows) / count,
        "mean_ssim": math.fsum(r["ssim"] for r in rows) / count,
        "n_images": count,
    }
    return {"summary": summary, "rows": rows}
