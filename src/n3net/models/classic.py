"""Classic Gaussian denoisers (BM3D, non-local means) behind the networks' denoiser interface.

Each function has the signature ``fn(noisy, sigma) -> denoised``: ``noisy`` a float tensor in
[0, 1] (not clipped), ``sigma`` the noise standard deviation on the 0-255 scale. Every (H, W)
plane is denoised on its own in float64 on the CPU; the result comes back in ``noisy``'s dtype and
device. ``bm3d`` and ``scikit-image`` are imported lazily (``pip install n3net[eval]``).

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["bm3d_denoise", "nlm_denoise"]

# Non-local means settings of scikit-image's documentation example ("Non-local means denoising
# for preserving textures"), with the known noise level in place of its estimate.
NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6
NLM_H_FACTOR = 0.8


def _per_plane(noisy: Tensor, denoise_plane: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """Apply a (H, W) float64 numpy denoiser to every plane of a (B, C, H, W) tensor."""
    if noisy.ndim != 4:
        raise ValueError(f"noisy must be (B, C, H, W), got shape {tuple(noisy.shape)}")
    planes = noisy.detach().to("cpu", torch.float64).numpy()
    out = np.empty_like(planes)
    for b in range(planes.shape[0]):
        for c in range(planes.shape[1]):
            out[b, c] = denoise_plane(np.ascontiguousarray(planes[b, c]))
    return torch.from_numpy(out).to(device=noisy.device, dtype=noisy.dtype)


def _check_sigma(sigma: float) -> float:
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (0-255 scale), got {sigma}")
    return float(sigma) / 255.0


def bm3d_denoise(noisy: Tensor, sigma: float) -> Tensor:
    """Denoise with BM3D (``bm3d.bm3d(z, sigma_psd=sigma / 255)``, default 'np' profile).

    Args:
        noisy: noisy images in [0, 1].
        sigma: noise standard deviation on the 0-255 scale.

    Returns:
        Denoised images.

    Raises:
        ImportError: the ``bm3d`` package is missing.

    Shape:
        (B, C, H, W) -> (B, C, H, W); the protocol uses (1, 1, H, W).
    """
    try:
        import bm3d
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("bm3d_denoise needs the 'bm3d' package; install n3net[eval]") from error
    sigma_unit = _check_sigma(sigma)
    return _per_plane(noisy, lambda z: np.asarray(bm3d.bm3d(z, sigma_psd=sigma_unit)))


def nlm_denoise(noisy: Tensor, sigma: float) -> Tensor:
    """Denoise with scikit-image's non-local means (``denoise_nl_means``, fast mode).

    Settings follow scikit-image's documentation example with the true noise level s = sigma/255
    in place of its estimate: ``patch_size=5, patch_distance=6, h=0.8 * s, sigma=s,
    fast_mode=True`` (``sigma`` makes the patch distances subtract the expected noise).

    Args:
        noisy: noisy images in [0, 1].
        sigma: noise standard deviation on the 0-255 scale.

    Returns:
        Denoised images.

    Raises:
        ImportError: scikit-image is missing.

    Shape:
        (B, C, H, W) -> (B, C, H, W); the protocol uses (1, 1, H, W).
    """
    try:
        from skimage.restoration import denoise_nl_means
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("nlm_denoise needs scikit-image; install n3net[eval]") from error
    sigma_unit = _check_sigma(sigma)

    def denoise_plane(plane: np.ndarray) -> np.ndarray:
        return denoise_nl_means(
            plane,
            patch_size=NLM_PATCH_SIZE,
            patch_distance=NLM_PATCH_DISTANCE,
            h=NLM_H_FACTOR * sigma_unit,
            sigma=sigma_unit,
            fast_mode=True,
        )

    return _per_plane(noisy, denoise_plane)
