"""Apply trained models to images: one tiler, one restorer, the denoising and upscaling doors.

* :mod:`~n3net.inference.tiling`: grid-aligned tiles with context, any output scale;
* :mod:`~n3net.inference.restore`: :class:`Restorer`, a model on images of any size and layout
  (automatic tiling under a memory limit);
* :mod:`~n3net.inference.denoiser`: :class:`Denoiser` and :func:`denoise` (sigma policy);
* :mod:`~n3net.inference.upscaler`: :class:`Upscaler` and :func:`upscale` (super-resolution);
* :mod:`~n3net.inference.catalog`: the shipped weights per sigma and the default among them.
"""

from n3net.inference.catalog import DEFAULT_SIGMA, default_model, trained_models
from n3net.inference.denoiser import Denoiser, SigmaMismatchError, denoise
from n3net.inference.restore import DEFAULT_MEMORY_LIMIT_MB, Geometry, Restorer, geometry
from n3net.inference.tiling import axis_windows, tiled_apply
from n3net.inference.upscaler import Upscaler, upscale

__all__ = [
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_SIGMA",
    "Denoiser",
    "Geometry",
    "Restorer",
    "SigmaMismatchError",
    "Upscaler",
    "axis_windows",
    "default_model",
    "denoise",
    "geometry",
    "tiled_apply",
    "trained_models",
    "upscale",
]
