"""Super-resolution: :func:`upscale` and the reusable :class:`Upscaler`.

``n3net.upscale(image, scale=2)`` makes an image ``scale`` times larger as the super-resolution
protocol does: the image is upscaled bicubically (MATLAB's ``imresize``,
:mod:`n3net.degradations.bicubic`), and a super-resolution network (task ``"sr"``: VDSR,
N3Net-SR) restores the luminance Y of YCbCr (BT.601, :mod:`n3net.data.ycbcr`) at the large
size; the colour channels Cb and Cr stay bicubic. Grey images are their own luminance. The
network runs through a :class:`~n3net.inference.restore.Restorer`, so large outputs are tiled
automatically under a memory limit and the tiles reproduce the whole-image result.

Until trained weights ship, the default model is ``"bicubic"`` (the interpolation alone).

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` the input's size, ``s`` the scale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from n3net._checks import resolve_device
from n3net.inference._arrays import to_planes
from n3net.inference.restore import DEFAULT_MEMORY_LIMIT_MB, Restorer

__all__ = ["DEFAULT_SR_MODEL", "Upscaler", "sr_models", "upscale"]

ImageT = TypeVar("ImageT", np.ndarray, Tensor)
ModelSpec = str | os.PathLike | nn.Module | None

DEFAULT_SR_MODEL = "bicubic"
# the largest square a too-small image is edge-padded to (N3Net-SR needs 16 px)
_MAX_PADDED_SIDE = 64
# Shipped super-resolution weights, best first: the default once one of them ships.
_SHIPPED_PREFERENCE = ("n3net-sr-x234", "vdsr-x234")


def default_sr_model() -> str:
    """The shipped super-resolution weights to use, else ``"bicubic"``.

    Example:
        >>> default_sr_model() in ("n3net-sr-x234", "vdsr-x234", "bicubic")
        True
    """
    from n3net.models import list_pretrained

    shipped = set(list_pretrained())
    return next((name for name in _SHIPPED_PREFERENCE if name in shipped), DEFAULT_SR_MODEL)


def sr_models() -> list[str]:
    """The model names super-resolution accepts: ``"bicubic"``, then the shipped SR weights.

    Example:
        >>> sr_models()[0]
        'bicubic'
    """
    from n3net.models import arch_info, list_architectures, list_pretrained, model_metadata

    shipped = []
    for name in list_pretrained():
        metadata = model_metadata(name)
        arch = metadata.get("n3net_arch", "")
        task = metadata.get("task") or (
            arch_info(arch).task if arch in list_architectures() else ""
        )
        if task == "sr":
            shipped.append(name)
    return [DEFAULT_SR_MODEL, *shipped]


def _check_name(name: str) -> None:
    """Refuse a bare name that is neither a path nor a super-resolution model, naming those."""
    from n3net.models import list_architectures, list_pretrained

    path = Path(name)
    if path.exists() or path.suffix or "/" in name or os.sep in name:
        return  # a path: load_model says what is wrong with it
    if name in list_pretrained() and name not in sr_models():
        return  # shipped weights of another task: load_model's metadata names the task
    known = sr_models()
    if name in known:
        return
    trained = [n for n in known if n != DEFAULT_SR_MODEL]
    listed = ", ".join(trained) if trained else "none shipped yet"
    what = "architecture" if name in list_architectures() else "super-resolution model"
    has = "has no trained weights" if what == "architecture" else "is unknown"
    raise ValueError(
        f"{what} {name!r} {has}; use bicubic, a trained model ({listed}), a .safetensors "
        "model file or a training run folder"
    )


def _model_file(model: str | os.PathLike) -> str | os.PathLike:
    """A run folder means its ``model.safetensors``; anything else is passed on."""
    path = Path(model)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"run folder '{path}' has no model.safetensors")
        return weights
    return model


def _load(model: ModelSpec) -> tuple[nn.Module, str]:
    """Return the module and its name; refuse models that are not super-resolution models."""
    from n3net.models import arch_info, load_model

    if model is None:
        model = default_sr_model()
    if isinstance(model, nn.Module):
        return model, type(model).__name__
    if not isinstance(model, str | os.PathLike):
        raise ValueError(f"model must be a name, a file, a folder or an nn.Module, got {model!r}")
    name = os.fspath(model)
    _check_name(name)
    module = load_model(_model_file(model), device="cpu")
    metadata = getattr(module, "metadata", {}) or {}
    task = metadata.get("task") or arch_info(metadata.get("n3net_arch", "")).task
    if task != "sr":
        raise ValueError(
            f"model {name} is a {task} model, not a super-resolution one; use bicubic, a vdsr or "
            "n3net-sr model file or run folder"
        )
    return module, name


def _trained_scales(module: nn.Module) -> tuple[int, ...] | None:
    """The scales a model file says it was trained for (``"scales": "2,3,4"``), else None."""
    text = (getattr(module, "metadata", None) or {}).get("scales")
    try:
        return tuple(int(part) for part in text.split(",")) if text else None
    except ValueError:
        return None


def check_scale(scale: object) -> int:
    """Return ``scale`` as an int >= 2, else raise a one-line ValueError.

    Example:
        >>> check_scale(3)
        3
    """
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    return int(scale)


class Upscaler:
    """A loaded super-resolution model for one scale, ready to be applied to many images.

    Args:
        model: None (the shipped weights, else ``"bicubic"``), ``"bicubic"``, a pretrained
            name, a ``.safetensors`` model file, a training run folder (its
            ``model.safetensors``), or an ``nn.Module`` mapping the bicubic-upsampled luminance
            (B, 1, s·H, s·W) to its estimate.
        scale: the integer factor (2, 3, 4 for the trained models; any >= 2 for bicubic).
        device: ``"cpu"``, ``"cuda"``, ... where the network runs.
        channels_last, memory_limit: as in :class:`~n3net.inference.restore.Restorer`; the
            limit applies to the network's pass at the output size.

    Attributes:
        name: the model's name, file or class name.
        scale: the factor.
        restorer: the :class:`~n3net.inference.restore.Restorer` running the network.

    Example:
        >>> up = Upscaler("bicubic", scale=3)
        >>> up(np.zeros((5, 7, 3), dtype=np.uint8)).shape
        (15, 21, 3)
    """

    def __init__(
        self,
        model: ModelSpec = None,
        scale: int = 2,
        device: str | torch.device = "cpu",
        *,
        channels_last: bool | None = None,
        memory_limit: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ) -> None:
        self.scale = check_scale(scale)
        resolve_device(device)  # an unusable device fails before a model loads
        module, self.name = _load(model)
        trained = _trained_scales(module)
        if trained is not None and self.scale not in trained:
            listed = ", ".join(map(str, trained))
            raise ValueError(f"model {self.name} was trained for scales {listed}, not {self.scale}")
        self.restorer = Restorer(
            module, device, name=self.name, channels_last=channels_last, memory_limit=memory_limit
        )
        if self.restorer.channels != 1:
            raise ValueError(
                f"model {self.name} reads {self.restorer.channels} channels; super-resolution "
                "models read the luminance (1 channel)"
            )
        self.device = self.restorer.device

    def __repr__(self) -> str:
        return f"Upscaler({self.name!r}, scale={self.scale}, {self.device})"

    def check_size(self, height: int, width: int) -> None:
        """Raise a one-line ValueError when an input of ``height x width`` cannot be upscaled."""
        if height < 1 or width < 1:
            raise ValueError(f"image must not be empty, got {height}x{width}")
        self.restorer.check_size(*self._padded_size(self.scale * height, self.scale * width))

    def _padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the network runs at: ``height x width``, or edge-padded up to the smallest
        square it accepts (N3Net-SR needs enough patches for k neighbours). A size no square
        up to ``_MAX_PADDED_SIDE`` px makes acceptable is returned unchanged, so that
        :meth:`check_size` reports the network's own limit."""
        for side in range(min(height, width), _MAX_PADDED_SIDE + 1):
            padded = (max(height, side), max(width, side))
            try:
                self.restorer.check_size(*padded)
            except ValueError:
                continue
            return padded
        return height, width

    def check_tile(self, tile: int | None, context: int | None = None) -> None:
        """Refuse a ``tile`` (output pixels) smaller than the network's receptive field."""
        self.restorer.check_tile(tile, context)

    def upscale_y(
        self,
        y: Tensor,
        tile: int | None = None,
        context: int | None = None,
        *,
        progress: bool = False,
    ) -> Tensor:
        """Upscale luminance images: bicubic, then the network (tiled when needed).

        Args:
            y: luminance in [0, 1].
            tile: the tile (core) side in output pixels; None picks automatically under the
                memory limit, 0 runs the whole image (see
                :meth:`~n3net.inference.restore.Restorer.plan_tile`).
            context: pixels of context per tile (default the receptive-field radius: exact).
            progress: show a progress bar over the tiles.

        Returns:
            The estimate, float32, unclipped, on ``y``'s device.

        Shape:
            (B, 1, H, W) -> (B, 1, s·H, s·W).
        """
        from n3net.degradations.bicubic import bicubic_upscale

        if not isinstance(y, Tensor) or y.ndim != 4 or y.shape[1] != 1:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"luminance must be a (B, 1, H, W) tensor, got {shape}")
        self.check_size(*y.shape[-2:])
        self.check_tile(tile, context)
        with torch.inference_mode():
            interpolated = bicubic_upscale(y.to(self.device, torch.float32), self.scale)
            height, width = interpolated.shape[-2:]
            padded = self._padded_size(height, width)
            if padded != (height, width):  # a tiny image: replicate its edges, crop them off
                pad = (0, padded[1] - width, 0, padded[0] - height)
                interpolated = torch.nn.functional.pad(interpolated, pad, mode="replicate")
        out = self.restorer.restore_tensor(interpolated, tile, context, progress=progress)
        return out[..., :height, :width].to(y.device)

    def upscale_tensor(
        self,
        x: Tensor,
        tile: int | None = None,
        context: int | None = None,
        *,
        progress: bool = False,
    ) -> Tensor:
        """Upscale grey (C = 1) or RGB (C = 3) images in [0, 1]; unclipped float32 result.

        RGB goes to YCbCr (BT.601); the network restores Y, Cb and Cr are bicubic.

        Shape:
            (B, C, H, W) -> (B, C, s·H, s·W).
        """
        from n3net.data.ycbcr import rgb_to_ycbcr, ycbcr_to_rgb
        from n3net.degradations.bicubic import bicubic_upscale

        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"images must be (B, 1, H, W) or (B, 3, H, W) tensors, got {shape}")
        if x.shape[1] == 1:
            return self.upscale_y(x, tile, context, progress=progress)
        self.check_size(*x.shape[-2:])
        with torch.inference_mode():
            ycbcr = rgb_to_ycbcr(x.to(torch.float32))
            colour = bicubic_upscale(ycbcr[:, 1:], self.scale)
        luma = self.upscale_y(ycbcr[:, :1], tile, context, progress=progress)
        with torch.inference_mode():
            return ycbcr_to_rgb(torch.cat([luma.to(colour.device), colour], dim=1))

    def __call__(
        self,
        image: ImageT,
        tile: int | None = None,
        context: int | None = None,
        *,
        clip: bool = True,
        progress: bool = False,
    ) -> ImageT:
        """Upscale an image and return it in the input's type, layout and dtype.

        Args:
            image: a numpy array (H, W) or (H, W, C) with C = 1 or 3, uint8, uint16 or float in
                [0, 1]; or a torch tensor (C, H, W) or (B, C, H, W), float in [0, 1] or uint8.
            tile, context, progress: as in :meth:`upscale_y`.
            clip: clip float results to [0, 1] (integer results always are).
        """
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (2, 4):
            raise ValueError(
                "images with alpha are not upscaled here; pass the colour channels and upscale "
                "alpha on its own (n3net upscale does both)"
            )
        planes, restore = to_planes(image)
        return restore(self.upscale_tensor(planes, tile, context, progress=progress), clip)


def upscale(
    image: ImageT,
    scale: int = 2,
    model: ModelSpec = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    *,
    context: int | None = None,
    clip: bool = True,
) -> ImageT:
    """Make an image ``scale`` times larger with a super-resolution model.

    Args:
        image: as :meth:`Upscaler.__call__` takes it (grey or RGB; 8- or 16-bit or float).
        scale: the integer factor (2, 3 or 4 for trained models).
        model: None (shipped weights, else ``"bicubic"``), a name, a model file, a run folder
            or an ``nn.Module`` (see :class:`Upscaler`).
        device: where the network runs.
        tile: None tiles large outputs automatically; 0 runs whole images; N uses N x N tiles
            of output pixels with the receptive field as context (the whole-image result).
        context: less context per tile (faster, slightly different).
        clip: clip float results to [0, 1] (integer results always are).

    Returns:
        The upscaled image, of the input's type, layout and dtype, ``scale`` times its size.

    Example:
        >>> upscale(np.zeros((4, 6), dtype=np.uint8), scale=4).shape
        (16, 24)
    """
    return Upscaler(model, scale, device)(image, tile, context, clip=clip)
