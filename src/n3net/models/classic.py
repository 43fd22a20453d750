"""Classic methods as models of the registry: BM3D, non-local means, bicubic interpolation.

``create_model("bm3d", sigma=25)`` / ``load_model("bm3d", sigma=25)`` (and ``"nlm"``) give an
``nn.Module`` with the interface of every other denoiser: noisy (B, C, H, W) in [0, 1] (not
clipped) in, the estimate out. They need no weights, and the noise level ``sigma`` (0-255
scale) is a constructor argument (the registry's ``conditions``). Every (H, W) plane is denoised
on its own in float64 on the CPU; the result comes back in the input's dtype and device.
``bm3d`` and ``scikit-image`` come with ``pip install 'n3net[eval]'``; building a model without
them raises :class:`~n3net._checks.MissingExtraError` before any work.
``bicubic`` is the super-resolution baseline (task ``"sr"``, no weights, no conditions).

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from n3net._checks import check_sigma, require_extra
from n3net.models._registry import register_model

__all__ = ["BM3D", "NLM", "BicubicInterpolation", "ClassicDenoiser"]

# Non-local means settings of scikit-image's documentation example ("Non-local means denoising
# for preserving textures"), with the known noise level in place of its estimate.
NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6
NLM_H_FACTOR = 0.8


class ClassicDenoiser(nn.Module):
    """A per-plane numpy denoiser told the noise level, behind the networks' interface.

    Subclasses set :attr:`receptive_radius` and implement :meth:`denoise_plane`.

    Args:
        sigma: noise standard deviation on the 0-255 scale.

    Shape:
        x: (B, C, H, W) -> (B, C, H, W).
    """

    receptive_radius = 0
    patch_grid = None
    scale = 1
    memory_per_pixel = 64  # a few float64 copies of the plane

    def __init__(self, sigma: float = 25.0) -> None:
        super().__init__()
        self.sigma = check_sigma(sigma)
        self.config = {"sigma": self.sigma}
        self._library = self.load_library()

    def load_library(self) -> ModuleType:
        """Import the package doing the work (raises MissingExtraError naming the extra)."""
        raise NotImplementedError

    def denoise_plane(self, plane: np.ndarray, sigma_unit: float) -> np.ndarray:
        """Denoise one (H, W) float64 plane with noise level ``sigma_unit`` (0-1 scale)."""
        raise NotImplementedError

    def check_size(self, height: int, width: int) -> None:
        """Every non-empty image works."""

    def forward(self, x: Tensor) -> Tensor:
        return _per_plane(x, lambda plane: self.denoise_plane(plane, self.sigma / 255.0))


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


class BM3D(ClassicDenoiser):
    """BM3D (``bm3d.bm3d(z, sigma_psd=sigma / 255)``, the package's default 'np' profile).

    Its block matching reaches farther than 32 px only rarely, so tiles with 32 px of context
    are close to, not identical with, the whole-image result.
    """

    receptive_radius = 32

    def load_library(self) -> ModuleType:
        return require_extra("bm3d", "the bm3d model")

    def denoise_plane(self, plane: np.ndarray, sigma_unit: float) -> np.ndarray:
        return np.asarray(self._library.bm3d(plane, sigma_psd=sigma_unit))


class NLM(ClassicDenoiser):
    """scikit-image's non-local means (``denoise_nl_means``, fast mode).

    Settings follow scikit-image's documentation example with the true noise level s = sigma/255
    in place of its estimate: ``patch_size=5, patch_distance=6, h=0.8 * s, sigma=s,
    fast_mode=True`` (``sigma`` makes the patch distances subtract the expected noise). Its
    receptive radius is exact: the patch distance plus half a patch.
    """

    receptive_radius = NLM_PATCH_DISTANCE + NLM_PATCH_SIZE // 2

    def load_library(self) -> ModuleType:
        return require_extra("skimage.restoration", "the nlm model")

    def denoise_plane(self, plane: np.ndarray, sigma_unit: float) -> np.ndarray:
        return self._library.denoise_nl_means(
            plane,
            patch_size=NLM_PATCH_SIZE,
            patch_distance=NLM_PATCH_DISTANCE,
            h=NLM_H_FACTOR * sigma_unit,
            sigma=sigma_unit,
            fast_mode=True,
        )


@register_model("bm3d", needs_weights=False, conditions=("sigma",))
def bm3d(**config: object) -> BM3D:
    """BM3D (Dabov et al. 2007), the classic baseline of the paper's Table 3."""
    return BM3D(**config)


@register_model("nlm", needs_weights=False, conditions=("sigma",))
def nlm(**config: object) -> NLM:
    """Non-local means (Buades et al. 2005) as scikit-image implements it."""
    return NLM(**config)


class BicubicInterpolation(nn.Module):
    """Bicubic interpolation as a super-resolution model (task ``"sr"``): the baseline row.

    A super-resolution model reads the bicubic-upsampled luminance and returns its estimate at
    the same size (see :mod:`n3net.models.vdsr`); :class:`n3net.inference.Upscaler` does the
    bicubic upscaling itself, so this model returns its input unchanged.

    Shape:
        x: (B, C, H, W) -> (B, C, H, W).

    Example:
        >>> x = torch.rand(1, 1, 4, 4)
        >>> torch.equal(BicubicInterpolation()(x), x)
        True
    """

    receptive_radius = 0
    patch_grid = None
    scale = 1
    memory_per_pixel = 8

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, object] = {}

    def check_size(self, height: int, width: int) -> None:
        """Every non-empty image works."""

    def forward(self, x: Tensor) -> Tensor:
        return x


@register_model("bicubic", task="sr", needs_weights=False)
def bicubic(**config: object) -> BicubicInterpolation:
    """Bicubic interpolation (MATLAB's ``imresize``), the super-resolution baseline."""
    return BicubicInterpolation(**config)
