"""Bicubic down- and up-scaling as MATLAB's ``imresize(x, scale, 'bicubic')`` computes it.

The super-resolution protocol (paper §5.4) makes the low-resolution image with MATLAB's
antialiased bicubic downscaling, and the networks (VDSR, N3Net-SR) read its bicubic upscaling
back to the high-resolution size. MATLAB's kernel is Keys' cubic (a = -0.5), widened by the
scale when downscaling (antialiasing), with weights normalised per output pixel and the image
extended *symmetrically* at its borders (edge pixels repeated). The ``resize-right`` package
computes the same weights (``pip install 'n3net[sr]'``); its own border padding differs, so the
input is first extended symmetrically here by more than the kernel reaches, resized, and cropped.
torch's own antialiased bicubic is not MATLAB's.

Sizes: integer scales only, and a downscaled side must be a multiple of the scale (crop the
high-resolution image first with :func:`crop_to_scale`, as the protocol does).

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size, ``s`` the scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from n3net._checks import require_extra

__all__ = [
    "BicubicDegradation",
    "bicubic_degrade",
    "bicubic_downscale",
    "bicubic_upscale",
    "crop_to_scale",
]


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    return scale


def _check_image(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point():
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"image must be a float tensor (..., H, W), got {what}")


def _symmetric_index(size: int, before: int, after: int, device: torch.device) -> Tensor:
    """Indices of a symmetric (edge-repeating) extension, MATLAB's border rule, any width.

    Example:
        >>> _symmetric_index(3, 2, 4, torch.device("cpu")).tolist()
        [1, 0, 0, 1, 2, 2, 1, 0, 0]
    """
    index = torch.arange(-before, size + after, device=device) % (2 * size)
    return torch.where(index < size, index, 2 * size - 1 - index)


def _extend(x: Tensor, before: int, after: int) -> Tensor:
    """Extend the last two axes symmetrically by ``before`` / ``after`` pixels."""
    height, width = x.shape[-2:]
    rows = _symmetric_index(height, before, after, x.device)
    cols = _symmetric_index(width, before, after, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _resize(x: Tensor, factor: int, up: bool) -> Tensor:
    """MATLAB bicubic by ``factor`` (up) or ``1 / factor`` (down) on the last two axes."""
    resize_right = require_extra("resize_right", "bicubic resizing", extra="sr")
    interp = require_extra("resize_right.interp_methods", "bicubic resizing", extra="sr")
    height, width = x.shape[-2:]
    # Context the kernel needs (half its support, +1): 2 input px up, 2 * factor px down.
    pad_in = 3 if up else 3 * factor
    pad_out = 3 * factor if up else 3
    out_h, out_w = (height * factor, width * factor) if up else (height // factor, width // factor)
    scale = float(factor) if up else 1.0 / factor
    batch = x.shape[:-2]
    padded = _extend(x.reshape(-1, 1, height, width), pad_in, pad_in)
    out = resize_right.resize(
        padded,
        scale_factors=[scale, scale],
        out_shape=[out_h + 2 * pad_out, out_w + 2 * pad_out],
        interp_method=interp.cubic,
        antialiasing=True,
    )
    out = out[..., pad_out : pad_out + out_h, pad_out : pad_out + out_w]
    return out.reshape(*batch, out_h, out_w)


def crop_to_scale(x: Tensor, scale: int) -> Tensor:
    """Crop the bottom and right so that H and W are multiples of ``scale`` (MATLAB's modcrop).

    Shape:
        (..., H, W) -> (..., H - H % s, W - W % s).

    Example:
        >>> crop_to_scale(torch.zeros(1, 1, 10, 7), 3).shape
        torch.Size([1, 1, 9, 6])
    """
    scale = _check_scale(scale)
    height, width = x.shape[-2:]
    if height < scale or width < scale:
        raise ValueError(f"image of {height}x{width} px is smaller than the scale {scale}")
    return x[..., : height - height % scale, : width - width % scale]


def bicubic_downscale(x: Tensor, scale: int) -> Tensor:
    """MATLAB's ``imresize(x, 1 / scale, 'bicubic')`` with antialiasing, on float images.

    Args:
        x: images whose H and W are multiples of ``scale`` (see :func:`crop_to_scale`).
        scale: the integer factor.

    Shape:
        (..., H, W) -> (..., H / s, W / s).

    Example:
        >>> bicubic_downscale(torch.ones(2, 1, 12, 8), 4).shape
        torch.Size([2, 1, 3, 2])
    """
    _check_image(x)
    scale = _check_scale(scale)
    height, width = x.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(
            f"image of {height}x{width} px is not a multiple of the scale {scale}; "
            "crop it first (crop_to_scale)"
        )
    return x if scale == 1 else _resize(x, scale, up=False)


def bicubic_upscale(x: Tensor, scale: int) -> Tensor:
    """MATLAB's ``imresize(x, scale, 'bicubic')`` on float images.

    Shape:
        (..., H, W) -> (..., s * H, s * W).

    Example:
        >>> up = bicubic_upscale(torch.full((1, 1, 3, 2), 0.5), 3)
        >>> up.shape, bool(torch.allclose(up, torch.tensor(0.5)))
        (torch.Size([1, 1, 9, 6]), True)
    """
    _check_image(x)
    scale = _check_scale(scale)
    if min(x.shape[-2:]) < 1:
        raise ValueError(f"image must not be empty, got {tuple(x.shape)}")
    return x if scale == 1 else _resize(x, scale, up=True)


def bicubic_degrade(x: Tensor, scale: int) -> Tensor:
    """Bicubic downscaling then upscaling back: the networks' input, at ``x``'s size.

    A side that is not a multiple of ``scale`` is first extended symmetrically at the bottom /
    right to the next multiple (MATLAB's border rule) and the result cropped back, so training
    crops of any size work; the protocol's test images are cropped instead (:func:`crop_to_scale`).

    Shape:
        (..., H, W) -> (..., H, W).

    Example:
        >>> bicubic_degrade(torch.rand(2, 1, 10, 11), 3).shape
        torch.Size([2, 1, 10, 11])
    """
    _check_image(x)
    scale = _check_scale(scale)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % scale, -width % scale
    if pad_h or pad_w:
        rows = _symmetric_index(height, 0, pad_h, x.device)
        cols = _symmetric_index(width, 0, pad_w, x.device)
        x = x.index_select(-2, rows).index_select(-1, cols)
    out = bicubic_upscale(bicubic_downscale(x, scale), scale)
    return out[..., :height, :width]


class BicubicDegradation(nn.Module):
    """Bicubic down- and up-scaling by a scale drawn per sample from ``scales``.

    The scale of each sample is drawn from the generator (uniformly among ``scales``; nothing is
    drawn for a single scale), so a batch mixes the scales and stays a pure function of the
    generator's seed. See :func:`bicubic_degrade`.

    Args:
        scales: the integer scales, e.g. ``(2, 3, 4)``.

    Shape:
        x: (B, C, H, W) -> (B, C, H, W).

    Example:
        >>> degrade = BicubicDegradation((2, 3, 4))
        >>> x = torch.rand(4, 1, 12, 12)
        >>> out = degrade(x, torch.Generator().manual_seed(0))
        >>> out.shape, torch.equal(out, degrade(x, torch.Generator().manual_seed(0)))
        (torch.Size([4, 1, 12, 12]), True)
    """

    def __init__(self, scales: Sequence[int] = (2, 3, 4)) -> None:
        super().__init__()
        scales = tuple(scales)
        if not scales:
            raise ValueError("scales must name at least one scale")
        self.scales = tuple(_check_scale(s) for s in scales)

    def draw(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """The scale of each of ``count`` samples, (B,) int64 on the CPU."""
        if len(self.scales) == 1:
            return torch.full((count,), self.scales[0], dtype=torch.int64)
        device = generator.device if generator is not None else torch.device("cpu")
        index = torch.randint(len(self.scales), (count,), generator=generator, device=device)
        return torch.tensor(self.scales, dtype=torch.int64)[index.cpu()]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return each sample bicubically degraded by its drawn scale."""
        if x.ndim != 4:
            raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
        chosen = self.draw(x.shape[0], generator)
        out = torch.empty_like(x)
        for scale in chosen.unique().tolist():
            members = (chosen == scale).nonzero()[:, 0].to(x.device)
            out[members] = bicubic_degrade(x[members], int(scale))
        return out

    def extra_repr(self) -> str:
        return f"scales={self.scales}"
