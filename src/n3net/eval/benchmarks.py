"""Benchmark runners: a denoiser over an image folder under the authors' evaluation protocol.

The protocol (see :mod:`n3net.data.protocol` and ``official_checkpoint.md``), reproduced exactly:

1. the folder's images in sorted file-name order, read as the authors' grey (1, 1, H, W) float32;
2. ``torch.manual_seed(seed)`` once per folder, then per image
   ``noisy = x + torch.zeros_like(x).normal_(0, 1) * sigma / 255`` drawn on the **CPU** (float32),
   unclipped, and only then moved to the device, so the noise never depends on the device;
3. the whole image through the denoiser in one pass, batch 1, eval mode, under
   ``torch.inference_mode()``;
4. PSNR ``10 log10(1 / (mse + 1e-10))`` on the **unclipped** output (the reported number), PSNR on
   the output clipped to [0, 1], and scikit-image SSIM on the clipped output; means over images.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from n3net._checks import check_sigma
from n3net.data.imageio import IMAGE_EXTENSIONS, list_images
from n3net.data.protocol import PROTOCOL_SEED, ProtocolNoise, load_gray_protocol
from n3net.eval.metrics import psnr, ssim

__all__ = ["ROW_KEYS", "SUMMARY_KEYS", "evaluate_denoiser", "protocol_files", "summarize"]

ROW_KEYS = ("name", "psnr", "psnr_clipped", "ssim", "seconds")
SUMMARY_KEYS = ("mean_psnr", "mean_psnr_clipped", "mean_ssim", "n_images")


def protocol_files(folder: str | os.PathLike) -> list[Path]:
    """Return a benchmark folder's images in the protocol's (sorted file-name) order.

    Args:
        folder: image folder (png, jpg, jpeg, tif, tiff, bmp; not recursive).

    Returns:
        The image paths, sorted by file name; never empty.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        ValueError: ``folder`` holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: '{folder}'")
    files = list_images(folder)
    if not files:
        kinds = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
        raise ValueError(f"no images ({kinds}) in data folder '{folder}'")
    return files


def summarize(rows: list[dict[str, Any]]) -> dict[str, float | int]:
    """Average per-image rows into the protocol's summary.

    Args:
        rows: dicts with at least ``psnr``, ``psnr_clipped`` and ``ssim``.

    Returns:
        ``{"mean_psnr", "mean_psnr_clipped", "mean_ssim", "n_images"}``; the means of an empty
        list are NaN.
    """
    count = len(rows)

    def mean(key: str) -> float:
        return math.fsum(float(row[key]) for row in rows) / count if count else math.nan

    return {
        "mean_psnr": mean("psnr"),
        "mean_psnr_clipped": mean("psnr_clipped"),
        "mean_ssim": mean("ssim"),
        "n_images": count,
    }


def _synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that per-image timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_one(denoise_fn: Callable[[Tensor], Tensor], noisy: Tensor, target: Tensor) -> Tensor:
    """Restore one (1, C, H, W) image, keeping the global RNG untouched for the next draw.

    The output must have the target's size (a denoiser's is its input's; a super-resolution
    model's is the high-resolution target's).
    """
    # The next image's noise comes from the global CPU generator: a denoiser that draws from it
    # (dropout left in train mode, a stochastic baseline) must not shift the protocol's stream.
    rng_state = torch.get_rng_state()
    try:
        output = denoise_fn(noisy)
    finally:
        torch.set_rng_state(rng_state)
    if not isinstance(output, Tensor) or tuple(output.shape) != tuple(target.shape):
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(
            f"model must return a tensor of the target's shape {tuple(target.shape)}, got {got}"
        )
    return output


def evaluate_denoiser(
    denoise_fn: Callable[[Tensor], Tensor],
    folder: str | os.PathLike,
    sigma: float,
    seed: int = PROTOCOL_SEED,
    progress: bool = True,
    *,
    device: str | torch.device = "cpu",
    description: str | None = None,
) -> dict[str, Any]:
    """Evaluate a grey denoiser on an image folder under the authors' protocol.

    Args:
        denoise_fn: maps a noisy (1, 1, H, W) float32 tensor on ``device`` to its estimate of the
            same shape, e.g. a model (put in eval mode here) or ``lambda y: bm3d_denoise(y, 25)``.
        folder: benchmark image folder.
        sigma: noise standard deviation on the 0-255 scale.
        seed: the once-per-folder seed of the global CPU generator; the authors used 1234.
        progress: show a tqdm progress bar on stderr.
        device: where the noisy image is sent (the noise itself is always drawn on the CPU).
        description: progress-bar label; defaults to the folder name and sigma.

    Returns:
        ``{"summary": {"mean_psnr", "mean_psnr_clipped", "mean_ssim", "n_images"}, "rows":
        [{"name", "psnr", "psnr_clipped", "ssim", "seconds"}, ...]}``, rows in protocol order;
        ``psnr`` is on the unclipped output and is the number the authors reported.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        ValueError: no images in ``folder``, ``sigma`` not > 0, or an output whose shape is not
            the clean image's.

    Shape:
        denoise_fn: (1, 1, H, W) -> (1, 1, H, W).

    Example:
        >>> result = evaluate_denoiser(lambda y: y, "set12", 25)  # doctest: +SKIP
        >>> round(result["summary"]["mean_psnr"], 2)  # doctest: +SKIP
        20.17
    """
    check_sigma(sigma)
    files = protocol_files(folder)
    device = torch.device(device)
    if isinstance(denoise_fn, nn.Module):
        denoise_fn.eval()

    from tqdm import tqdm

    label = description or f"{Path(folder).name} sigma={sigma:g}"
    noise = ProtocolNoise(seed)  # seeds the global CPU generator once for the whole folder
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for path in tqdm(files, desc=label, unit="img", disable=not progress, leave=False):
            clean = load_gray_protocol(path)  # (1, 1, H, W) float32, CPU
            noisy = noise.next_noisy(clean, sigma).to(device)  # noise drawn on the CPU
            _synchronize(device)
            start = time.perf_counter()
            output = _run_one(denoise_fn, noisy, clean)
            _synchronize(device)
            seconds = time.perf_counter() - start
            output = output.detach().to("cpu")
            clipped = output.clamp(0.0, 1.0)
            rows.append(
                {
                    "name": path.name,
                    "psnr": psnr(output, clean),
                    "psnr_clipped": psnr(clipped, clean),
                    "ssim": ssim(clipped, clean),
                    "seconds": seconds,
                }
            )
    return {"summary": summarize(rows), "rows": rows}
