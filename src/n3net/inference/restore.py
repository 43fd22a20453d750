"""Apply an image-restoration model to images of any size: the :class:`Restorer`.

A restorer holds one model (a denoiser now; super-resolution and real-noise models share it)
and runs it on (B, C, H, W) tensors or on numpy / torch images of the user's layout. It reads
what the model declares about itself (:func:`geometry`): its receptive-field radius, patch grid,
output scale, smallest input, and memory per pixel. From those it decides how to run an image:

* whole, in one pass, when the image fits the memory limit (bit-exact with calling the model);
* otherwise in tiles (:mod:`n3net.inference.tiling`) as large as the limit allows, each with
  the full receptive field as context and on the model's patch grid, so the result equals the
  whole-image one up to float rounding;
* in tiles of a side the caller asks for (``tile``), refused when smaller than the receptive
  field (then the overlap would cost many times the work).

Colour: a grey (1-channel) model restores each colour channel on its own; a 3-channel model
restores RGB jointly.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size, ``s`` the output scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from n3net._checks import resolve_device
from n3net.inference._arrays import to_planes
from n3net.inference.tiling import tiled_apply, window_side

__all__ = ["DEFAULT_MEMORY_LIMIT_MB", "Geometry", "Restorer", "geometry"]

# Memory a forward pass may take before an image is tiled: with the process's own ~250 MB
# (torch, the model, the image) a 3000x2000 photo stays under 2 GB peak RSS with either shipped
# model (benchmarks/peak_memory.py).
DEFAULT_MEMORY_LIMIT_MB = 1024.0
_FALLBACK_BYTES_PER_PIXEL = 4096

ImageT = TypeVar("ImageT", np.ndarray, Tensor)


@dataclass(frozen=True)
class Geometry:
    """What a model declares about its input and output.

    Attributes:
        channels: image channels it reads (1 grey, 3 colour).
        receptive_radius: pixels on each side that reach one output pixel.
        grid: ``(patch_size, stride)`` of its patch grid, or None.
        scale: output size over input size.
        memory_per_pixel: bytes one input pixel costs in a forward pass.
    """

    channels: int
    receptive_radius: int
    grid: tuple[int, int] | None
    scale: int
    memory_per_pixel: int


def _conv_radius(model: nn.Module) -> int:
    """Sum of the convolutions' radii: a lower bound for a module that declares nothing."""
    radius = 0
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            kernel, dilation = layer.kernel_size, layer.dilation
            radius += max((k - 1) // 2 * d for k, d in zip(kernel, dilation, strict=True))
    return radius


def _channels(model: nn.Module) -> int:
    config = getattr(model, "config", None) or {}
    if "channels" in config:
        return int(config["channels"])
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            return int(layer.in_channels)
    return 1


def geometry(model: nn.Module) -> Geometry:
    """Read a model's declared geometry (see :func:`n3net.models.register_model`).

    A module of another origin that declares nothing gets its convolutions' radii as receptive
    radius (exact for plain CNNs), no patch grid, scale 1 and a generous memory estimate.

    Example:
        >>> from n3net.models import create_model
        >>> geometry(create_model("n3net")).receptive_radius
        112
    """
    radius = getattr(model, "receptive_radius", None)
    grid = getattr(model, "patch_grid", None)
    return Geometry(
        channels=_channels(model),
        receptive_radius=_conv_radius(model) if radius is None else int(radius),
        grid=None if grid is None else (int(grid[0]), int(grid[1])),
        scale=int(getattr(model, "scale", 1)),
        memory_per_pixel=int(getattr(model, "memory_per_pixel", _FALLBACK_BYTES_PER_PIXEL)),
    )


def _channels_last_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """Wrap a network so that it sees channels-last input and returns a contiguous output."""

    def run(x: Tensor) -> Tensor:
        return module(x.contiguous(memory_format=torch.channels_last)).contiguous()

    return run


class Restorer:
    """A loaded image-restoration model, ready to be applied to many images.

    Args:
        module: maps (B, C, H, W) float images in [0, 1] to their estimate (B, C, s·H, s·W).
        device: ``"cpu"``, ``"cuda"``, ... where it runs.
        name: a label for messages (default: the module's class name).
        channels_last: run on channels-last tensors; None (default) means on the CPU, where
            oneDNN's convolutions are faster and leaner that way (DnCNN-17 at 1024²: 8.3 s
            instead of 11.8 s; ``benchmarks/speed.py``). The result is the same up to rounding.
        memory_limit: megabytes a forward pass may use before images are tiled automatically
            (None: never tile automatically).

    Attributes:
        geometry: the model's declared :class:`Geometry`.
        channels, scale: shortcuts into it.

    Example:
        >>> import torch
        >>> from n3net.models import create_model
        >>> restorer = Restorer(create_model("dncnn", depth=3, features=8).eval())
        >>> restorer.restore_tensor(torch.rand(1, 1, 40, 30), tile=16).shape
        torch.Size([1, 1, 40, 30])
    """

    def __init__(
        self,
        module: nn.Module,
        device: str | torch.device = "cpu",
        *,
        name: str | None = None,
        channels_last: bool | None = None,
        memory_limit: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(module).__name__}")
        self.device = resolve_device(device)
        self.name = name or type(module).__name__
        self.geometry = geometry(module)
        self.channels, self.scale = self.geometry.channels, self.geometry.scale
        self.memory_limit = memory_limit
        self.module = module.to(self.device).eval()
        self._fn: Callable[[Tensor], Tensor] = self.module
        if self.device.type == "cpu" if channels_last is None else channels_last:
            self.module.to(memory_format=torch.channels_last)
            self._fn = _channels_last_fn(self.module)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, channels={self.channels}, {self.device})"

    def min_tile(self, context: int | None = None) -> int:
        """The smallest ``tile`` accepted: the receptive field, ``2 * context + 1`` pixels."""
        context = self.geometry.receptive_radius if context is None else context
        return 2 * context + 1

    def check_tile(self, tile: int | None, context: int | None = None) -> None:
        """Raise a one-line ValueError for a ``tile`` smaller than the receptive field."""
        if context is not None and context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        if tile is None or tile <= 0:
            return
        least = self.min_tile(context)
        if tile < least:
            raise ValueError(
                f"tile must be at least {least} px for model {self.name} (its receptive field; "
                f"smaller tiles would spend most of the work on their overlap), got {tile}"
            )

    def check_size(self, height: int, width: int) -> None:
        """Raise a one-line ValueError when the model cannot run on a ``height x width`` image."""
        if height < 1 or width < 1:
            raise ValueError(f"image must not be empty, got {height}x{width}")
        check = getattr(self.module, "check_size", None)
        if callable(check):
            check(height, width)

    def plan_tile(
        self, height: int, width: int, tile: int | None = None, context: int | None = None
    ) -> int | None:
        """Choose the core side for an image: None runs it whole.

        Args:
            height, width: the image size.
            tile: None picks automatically under :attr:`memory_limit`; 0 (or less) always
                runs the whole image; a positive side is checked and kept.
            context: the context the tiles will carry (default the receptive-field radius).
        """
        if tile is not None:
            self.check_tile(tile, context)
            return tile if tile > 0 else None
        per_pixel = self.geometry.memory_per_pixel
        if self.memory_limit is None or height * width * per_pixel <= self.memory_limit * 2**20:
            return None
        fits = math.isqrt(int(self.memory_limit * 2**20 / per_pixel))
        margin = window_side(0, self.geometry.receptive_radius, self.geometry.grid)
        return max(self.min_tile(), fits - margin)

    def _run_plane(self, plane: Tensor, tile: int | None, context: int, progress: bool) -> Tensor:
        grid = self.geometry.grid
        return tiled_apply(
            self._fn,
            plane,
            tile,
            context,
            grid=grid,
            scale=self.scale,
            progress=progress,
            description=self.name,
        )

    def restore_tensor(
        self,
        x: Tensor,
        tile: int | None = None,
        context: int | None = None,
        *,
        progress: bool = False,
    ) -> Tensor:
        """Restore float images in [0, 1] without clipping the result.

        Args:
            x: the images; a grey model restores each of the C channels on its own, a colour
                model needs C = 3.
            tile: the tile (core) side; None picks automatically under the memory limit, 0
                runs the whole image in one pass (see :meth:`plan_tile`).
            context: pixels of context around each tile; default the receptive-field radius
                (the whole-image result). Less is faster and not exact.
            progress: show a progress bar over the tiles of each image.

        Returns:
            The estimate, on ``x``'s device in float32.

        Shape:
            (B, C, H, W) -> (B, C, s·H, s·W).
        """
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
        if self.channels != 1 and x.shape[1] != self.channels:
            raise ValueError(
                f"model {self.name} restores {self.channels}-channel images, got {x.shape[1]} "
                "channel(s); use a grey model"
            )
        height, width = x.shape[-2:]
        self.check_size(height, width)
        self.check_tile(tile, context)
        core = self.plan_tile(height, width, tile, context)
        context = self.geometry.receptive_radius if context is None else int(context)
        step = self.channels  # a grey model sees one channel at a time
        source = x.to(self.device, torch.float32)
        out: Tensor | None = None
        with torch.inference_mode():
            for b in range(source.shape[0]):
                for c in range(0, source.shape[1], step):
                    y = self._run_plane(source[b : b + 1, c : c + step], core, context, progress)
                    if out is None:
                        out = y.new_empty((source.shape[0], source.shape[1], *y.shape[-2:]))
                    out[b : b + 1, c : c + step] = y
        if out is None:  # an empty batch
            out = source.new_empty((*source.shape[:2], self.scale * height, self.scale * width))
        return out.to(x.device)

    def __call__(
        self,
        image: ImageT,
        tile: int | None = None,
        context: int | None = None,
        *,
        clip: bool = True,
        progress: bool = False,
    ) -> ImageT:
        """Restore an image and return it in the input's type, layout and dtype.

        Args:
            image: a numpy array (H, W) or (H, W, C), uint8, uint16 or float in [0, 1] (a 2-
                or 4-channel array's last channel is alpha and comes back unchanged); or a
                torch tensor (C, H, W) or (B, C, H, W), float in [0, 1] or uint8. Float images
                with values above 3 are refused: they are on another scale.
            tile, context, progress: as in :meth:`restore_tensor`.
            clip: clip float results to [0, 1] (integer results always are).
        """
        planes, restore = to_planes(image)
        out = self.restore_tensor(planes, tile, context, progress=progress)
        return restore(out, clip)

    def as_function(self) -> Callable[[Tensor], Tensor]:
        """The whole-image forward pass as ``fn(x) -> y`` (what a benchmark protocol runs)."""
        return lambda x: self.restore_tensor(x, tile=0)

    def describe(self) -> dict[str, Any]:
        """The restorer's settings as plain values (for logs and JSON)."""
        return {"name": self.name, "device": str(self.device), **self.geometry.__dict__}
