"""Denoise images with a trained model: :func:`denoise` and the reusable :class:`Denoiser`.

Both are re-exported as ``n3net.denoise`` and ``n3net.Denoiser``. (This module is not called
``denoise.py``: a submodule of that name would replace the function ``n3net.denoise`` by the
module as soon as anything imported it.)

``n3net.denoise(image, sigma=25)`` picks the trained weights for that noise level, converts the
image to the network's (B, C, H, W) float layout in [0, 1], runs it (optionally over overlapping
tiles) and gives back the input's type, layout, dtype and device.

Colour: a grey (1-channel) model denoises every colour channel on its own, as a grey image; a
3-channel (colour) model denoises RGB jointly. The classic baselines ``"bm3d"`` and ``"nlm"``
(see :mod:`n3net.eval.classic`) work like a grey model.

Tiles: with ``tile``, the image goes through the network in overlapping square windows, each
reaching the model's receptive-field radius (:func:`context_radius`) beyond the part of it that
is kept. N3Net's patch grid is anchored to its input's border, so for N3Net-shaped models the
windows are also placed on the whole image's patch grid (:func:`grid_aligned_windows`); the
tiled output then equals the whole-image output up to float rounding (Set12 with a briefly
trained N3Net: 0.000000 dB). A smaller ``overlap`` trades exactness for speed: 80 px changed
PSNR by < 1e-5 dB, 64 px by up to 0.0015 dB, 48 px by up to 0.06 dB; without grid alignment
tiles were off by 0.01 to 0.06 dB whatever the overlap.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "CLASSIC_MODELS",
    "DEFAULT_SIGMA",
    "Denoiser",
    "SigmaMismatchError",
    "context_radius",
    "default_model",
    "denoise",
    "grid_aligned_windows",
    "patch_grid",
    "resolve_device",
    "trained_models",
]

CLASSIC_MODELS = ("bm3d", "nlm")
DEFAULT_SIGMA = 25.0
# Order in which the default weights for a sigma are chosen when several exist.
_ARCH_PREFERENCE = ("n3net", "n3net-light", "dncnn")
# Context kept around tiles of the classic baselines: NLM's is exact (patch distance 6 plus half
# its 5x5 patch); BM3D's block matching reaches farther, so its tiles are close, not identical.
_CLASSIC_OVERLAP = {"bm3d": 32, "nlm": 8}
# The integer dtypes accepted, and the value each maps to 1.0.
_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

ImageT = TypeVar("ImageT", np.ndarray, Tensor)


class SigmaMismatchError(ValueError):
    """A model file's training sigma differs from the sigma asked for."""


def resolve_device(device: str | torch.device) -> torch.device:
    """Return ``torch.device(device)``, refusing accelerators torch cannot use here.

    Raises:
        ValueError: an unknown device string, or CUDA / MPS requested but unavailable.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} (use cpu or cuda)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available to torch")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} requested but MPS is not available to torch")
    return resolved


def _check_sigma(sigma: float) -> float:
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"sigma must be a finite number > 0 (0-255 scale), got {sigma!r}")
    return value


def _metadata_sigma(metadata: dict[str, str] | None) -> float | None:
    """The sigma a model file was trained for, from its metadata (None when it has none)."""
    text = (metadata or {}).get("sigma")
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _shipped_metadata() -> dict[str, dict[str, str]]:
    """Every shipped pretrained name with its model file's metadata (one read each)."""
    from n3net.models import list_pretrained, model_metadata

    return {name: model_metadata(name) for name in list_pretrained()}


def trained_models() -> dict[str, float | None]:
    """Map every shipped pretrained name to the sigma it was trained for (None if unknown)."""
    return {name: _metadata_sigma(meta) for name, meta in _shipped_metadata().items()}


def _trained_sigmas_text(models: dict[str, float | None]) -> str:
    sigmas = sorted({s for s in models.values() if s is not None})
    if not sigmas:
        return "no trained weights are shipped yet; give a .safetensors model file instead"
    listed = ", ".join(f"{s:g}" for s in sigmas)
    return f"trained sigmas: {listed} (models: {', '.join(models)})"


def default_model(sigma: float) -> str:
    """Return the shipped pretrained model trained for ``sigma`` (0-255 scale).

    When several exist, the one with the best measured PSNR comes first: a model file may
    record its BSD68 PSNR at its sigma in the metadata entry ``bsd68_psnr`` (written when the
    weights ship, from ``n3net evaluate``), and files without one rank after those with one.
    Ties go to N3Net before N3Net light and DnCNN, grey before colour, then the name.

    Raises:
        ValueError: no shipped weights for that sigma; the message lists the sigmas that exist.
    """
    sigma = _check_sigma(sigma)
    shipped = _shipped_metadata()
    models = {name: _metadata_sigma(meta) for name, meta in shipped.items()}
    matching = [name for name, trained in models.items() if trained == sigma]
    if not matching:
        raise ValueError(f"no trained model for sigma {sigma:g}; {_trained_sigmas_text(models)}")

    def rank(name: str) -> tuple[float, int, bool, str]:
        metadata = shipped[name]
        try:
            psnr = float(metadata.get("bsd68_psnr", "nan"))
        except ValueError:
            psnr = math.nan
        arch = metadata.get("n3net_arch", "")
        order = _ARCH_PREFERENCE.index(arch) if arch in _ARCH_PREFERENCE else len(_ARCH_PREFERENCE)
        measured = -psnr if math.isfinite(psnr) else math.inf
        return measured, order, metadata.get("channels", "1") != "1", name

    return min(matching, key=rank)


def context_radius(model: nn.Module) -> int:
    """Pixels on each side that can influence one output pixel (the receptive-field radius).

    DnCNN: one pixel per 3x3 convolution (its ``depth``). N3Net-shaped models (``n3net``,
    ``n3net-light``, ``concrete``, ``knn-*``): the DnCNN blocks plus, per N3 block, the
    embedding CNN and the patch search reach ``(search_window // 2) * stride + patch_size - 1``;
    the paper's N3Net gives 3 * 6 + 2 * (3 + 7 * 5 + 9) = 112. Other modules: the sum of their
    convolutions' radii (a lower bound for networks with non-local parts).
    """
    config: dict[str, Any] = getattr(model, "config", None) or {}
    if all(key in config for key in ("search_window", "stride", "patch_size")):
        n_blocks, depth = int(config.get("n_blocks", 3)), int(config.get("depth", 6))
        learned = "embed_depth" in config and "match" not in config  # knn-* match raw patches
        embed = int(config["embed_depth"]) if learned else 0
        reach = (int(config["search_window"]) // 2) * int(config["stride"])
        reach += int(config["patch_size"]) - 1
        guide = int(config.get("predenoiser_depth", 0)) if config.get("match") == "dncnn" else 0
        return n_blocks * depth + (n_blocks - 1) * (embed + reach) + guide
    if getattr(model, "arch", None) == "dncnn" and "depth" in config:
        return int(config["depth"])
    radius = 0
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            kernel, dilation = layer.kernel_size, layer.dilation
            radius += max((k - 1) // 2 * d for k, d in zip(kernel, dilation, strict=True))
    return radius


def _channels(model: nn.Module) -> int:
    """Image channels a model expects: ``config["channels"]``, else its first convolution's."""
    config = getattr(model, "config", None) or {}
    if "channels" in config:
        return int(config["channels"])
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            return int(layer.in_channels)
    return 1


def patch_grid(model: nn.Module) -> tuple[int, int] | None:
    """``(patch_size, stride)`` of a model's N3 / KNN blocks, or None for grid-free models.

    The blocks pad their input so that patches tile it, which anchors the patch grid to the
    input's border: the same pixels cut into patches differently when the input is cropped by a
    number of pixels that is not a multiple of the stride (see :func:`grid_aligned_windows`).
    """
    config: dict[str, Any] = getattr(model, "config", None) or {}
    if all(key in config for key in ("search_window", "stride", "patch_size")):
        return int(config["patch_size"]), int(config["stride"])
    return None


def grid_aligned_windows(
    size: int, tile: int, overlap: int, patch_size: int, stride: int
) -> list[tuple[int, int, int, int]]:
    """Split one axis into windows whose own patch grids lie on the whole axis's patch grid.

    Cores partition ``[0, size)``; each window reaches ``overlap`` pixels beyond its core
    (clamped to the axis), then grows by less than ``stride`` pixels on either side until the
    patches the network cuts from the window (with :func:`~n3net.ops.patches.patch_padding`)
    are patches of the whole image's grid. Without this, tiles of an N3Net see the image cut
    into differently placed patches, and their outputs differ everywhere, not only at the seams
    (about 0.05 dB on Set12 with a trained N3Net).

    Args:
        size: axis length in pixels.
        tile: maximum window length; must exceed ``2 * overlap + 2 * (stride - 1)``.
        overlap: context on each side of a core.
        patch_size, stride: the model's patch grid.

    Returns:
        ``(window start, window stop, core start, core stop)`` tuples.
    """
    from n3net.ops.patches import patch_padding

    if size <= tile:
        return [(0, size, 0, size)]
    core = tile - 2 * overlap - 2 * (stride - 1)
    if core < 1:
        raise ValueError(f"tile must be > {tile - core} px for overlap {overlap}, got {tile}")
    origin = -patch_padding(size, patch_size, stride)[0]  # grid start of the whole axis
    count = math.ceil(size / core)
    edges = [i * size // count for i in range(count + 1)]
    growths = sorted(((a, b) for a in range(stride) for b in range(stride)), key=sum)
    windows = []
    for core_start, core_stop in zip(edges[:-1], edges[1:], strict=True):
        for before, after in growths:
            start = max(core_start - overlap - before, 0)
            stop = min(core_stop + overlap + after, size)
            if (start - patch_padding(stop - start, patch_size, stride)[0] - origin) % stride == 0:
                break
        else:  # pragma: no cover - some growth always aligns (stride consecutive lengths)
            raise AssertionError(f"no grid-aligned window for core {core_start}:{core_stop}")
        windows.append((start, stop, core_start, core_stop))
    return windows


def _tiled_on_grid(
    fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int, grid: tuple[int, int]
) -> Tensor:
    """Like :func:`~n3net.eval.tiling.denoise_tiled`, with :func:`grid_aligned_windows`."""
    height, width = x.shape[-2:]
    rows = grid_aligned_windows(height, tile, overlap, *grid)
    cols = grid_aligned_windows(width, tile, overlap, *grid)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x)
    out = torch.empty_like(x)
    for row_start, row_stop, core_top, core_bottom in rows:
        for col_start, col_stop, core_left, core_right in cols:
            y = fn(x[..., row_start:row_stop, col_start:col_stop])
            out[..., core_top:core_bottom, core_left:core_right] = y[
                ...,
                core_top - row_start : core_bottom - row_start,
                core_left - col_start : core_right - col_start,
            ]
    return out


def _classic_fn(name: str, sigma: float) -> Callable[[Tensor], Tensor]:
    from n3net.eval.classic import bm3d_denoise, nlm_denoise

    method = bm3d_denoise if name == "bm3d" else nlm_denoise
    return lambda noisy: method(noisy, sigma)


class Denoiser:
    """A loaded denoiser, ready to be applied to many images.

    Args:
        model: None for the shipped weights trained for ``sigma``; a pretrained name; a
            ``.safetensors`` model file; an ``nn.Module`` mapping noisy (B, C, H, W) in [0, 1]
            to its estimate; or ``"bm3d"`` / ``"nlm"`` for the classic baselines.
        sigma: noise level on the 0-255 scale. With ``model=None`` it picks the weights (25 when
            also None); with a model file whose metadata names its training sigma, a different
            value is an error unless ``check_sigma=False``; the classic baselines need it (25
            when None). Networks have no sigma input: it never changes what a network computes.
        device: ``"cpu"``, ``"cuda"``, ... where the network runs.
        check_sigma: refuse a model trained for another sigma than ``sigma``.
        channels_last: run the network on channels-last tensors; None (default) means on the
            CPU, where oneDNN's convolutions are faster and leaner that way (DnCNN-17 at 1024²:
            8.3 s instead of 11.8 s and 777 instead of 1033 MiB; N3Net: 15.3 s instead of 21.0 s
            and 863 instead of 1119 MiB; ``benchmarks/speed.py [--channels-last]``, README).
            The result is the same up to float rounding.

    Attributes:
        name: the model's name, file or class name.
        sigma: the sigma asked for, else the model's training sigma, else None.
        trained_sigma: the model's training sigma from its metadata (None when unknown).
        channels: 1 (grey, applied per channel) or 3 (colour).
        overlap: default tile overlap in pixels, the model's :func:`context_radius`.
        grid: ``(patch_size, stride)`` of its N3 blocks, which tiles are aligned to (None for
            grid-free models); see :func:`grid_aligned_windows`.

    Example:
        >>> den = Denoiser("n3net-gray-sigma25")  # doctest: +SKIP
        >>> clean = den(noisy_uint8_array, tile=512)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module | None = None,
        sigma: float | None = None,
        device: str | torch.device = "cpu",
        *,
        check_sigma: bool = True,
        channels_last: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        sigma = None if sigma is None else _check_sigma(sigma)
        self.module: nn.Module | None = None
        if isinstance(model, str) and model in CLASSIC_MODELS:
            self.name, self.trained_sigma = model, None
            self.sigma = DEFAULT_SIGMA if sigma is None else sigma
            self.channels, self.overlap = 1, _CLASSIC_OVERLAP[model]
            self.grid: tuple[int, int] | None = None
            self._fn = _classic_fn(model, self.sigma)
            return
        if model is None:
            model = default_model(DEFAULT_SIGMA if sigma is None else sigma)
        if isinstance(model, nn.Module):
            module, self.name = model, type(model).__name__
        elif isinstance(model, str | os.PathLike):
            from n3net.models import load_model

            module, self.name = load_model(model, device="cpu"), os.fspath(model)
        else:
            raise ValueError(f"model must be a name, a file or an nn.Module, got {model!r}")
        self.trained_sigma = _metadata_sigma(getattr(module, "metadata", None))
        if check_sigma and None not in (sigma, self.trained_sigma) and sigma != self.trained_sigma:
            raise SigmaMismatchError(
                f"model {self.name} was trained for sigma {self.trained_sigma:g}, not "
                f"{sigma:g}; ask for sigma {self.trained_sigma:g} or choose another model"
            )
        self.sigma = sigma if sigma is not None else self.trained_sigma
        self.module = module.to(self.device).eval()
        self.channels = _channels(module)
        self.overlap = context_radius(module)
        self.grid = patch_grid(module)
        self._fn = self.module
        if self.device.type == "cpu" if channels_last is None else channels_last:
            self.module.to(memory_format=torch.channels_last)
            self._fn = _channels_last_fn(self.module)

    def __repr__(self) -> str:
        sigma = "None" if self.sigma is None else f"{self.sigma:g}"
        return f"Denoiser({self.name!r}, sigma={sigma}, channels={self.channels}, {self.device})"

    def check_tile(self, tile: int | None, overlap: int | None = None) -> None:
        """Raise a one-line ValueError unless `tile` leaves room for the overlap around a core."""
        overlap = self.overlap if overlap is None else int(overlap)
        if tile is None or tile <= 0:
            return
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        # grid-aligned windows may grow by stride - 1 pixels on each side
        least = 2 * overlap + (2 * (self.grid[1] - 1) if self.grid else 0)
        if tile <= least:
            raise ValueError(
                f"tile must be > {least} px for model {self.name} (overlap {overlap} px on each "
                f"side{' plus patch-grid alignment' if self.grid else ''}), got {tile}"
            )

    def denoise_tensor(
        self, x: Tensor, tile: int | None = None, overlap: int | None = None
    ) -> Tensor:
        """Denoise float images in [0, 1] without clipping the result.

        Args:
            x: noisy images; a grey model denoises each of the C channels on its own, a colour
                model needs C = 3.
            tile: side of the square tiles (None: the whole image in one pass).
            overlap: context kept around each tile's core; default :attr:`overlap`.

        Returns:
            The estimate, on ``x``'s device in float32.

        Shape:
            (B, C, H, W) -> (B, C, H, W).
        """
        from n3net.eval.tiling import denoise_tiled

        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
        overlap = self.overlap if overlap is None else int(overlap)
        self.check_tile(tile, overlap)
        if self.channels != 1 and x.shape[1] != self.channels:
            raise ValueError(
                f"model {self.name} denoises {self.channels}-channel images, got {x.shape[1]} "
                "channel(s); use a grey model"
            )
        step = self.channels  # a grey model sees one channel at a time
        source = x.to(self.device, torch.float32)
        out = torch.empty_like(source)
        with torch.inference_mode():
            for b in range(source.shape[0]):
                for c in range(0, source.shape[1], step):
                    plane = source[b : b + 1, c : c + step]
                    if self.grid is not None and tile is not None and tile > 0:
                        y = _tiled_on_grid(self._fn, plane, tile, overlap, self.grid)
                    else:
                        y = denoise_tiled(self._fn, plane, tile, overlap)
                    out[b : b + 1, c : c + step] = y
        return out.to(x.device)

    def __call__(
        self,
        image: ImageT,
        tile: int | None = None,
        overlap: int | None = None,
        *,
        clip: bool = True,
    ) -> ImageT:
        """Denoise an image and return it in the input's type, layout and dtype.

        See :func:`denoise` for the accepted inputs.
        """
        planes, restore = _to_planes(image)
        return restore(self.denoise_tensor(planes, tile, overlap), clip)


def _channels_last_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """Wrap a network so that it sees channels-last input and returns a contiguous output."""

    def run(x: Tensor) -> Tensor:
        return module(x.contiguous(memory_format=torch.channels_last)).contiguous()

    return run


def _to_planes(image: Any) -> tuple[Tensor, Callable[[Tensor, bool], Any]]:
    """Convert an image to (B, C, H, W) float32 and return a function converting back."""
    if isinstance(image, Tensor):
        return _tensor_to_planes(image)
    if isinstance(image, np.ndarray):
        return _array_to_planes(image)
    raise ValueError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")


def _check_finite(values: Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError("image contains NaN or infinite values")


def _tensor_to_planes(image: Tensor) -> tuple[Tensor, Callable[[Tensor, bool], Tensor]]:
    if image.ndim not in (3, 4):
        raise ValueError(f"a tensor image must be (C, H, W) or (B, C, H, W), got {image.shape}")
    if image.dtype == torch.uint8:
        planes, scale = image.float() / 255.0, 255.0
    elif image.is_floating_point():
        planes, scale = image.float(), None
    else:
        raise ValueError(f"a tensor image must be float in [0, 1] or uint8, got {image.dtype}")
    _check_finite(planes)
    batched = planes if image.ndim == 4 else planes[None]

    def restore(out: Tensor, clip: bool) -> Tensor:
        out = out if image.ndim == 4 else out[0]
        if scale is not None:
            return (out.clamp(0.0, 1.0) * scale).round().to(image.dtype)
        return (out.clamp(0.0, 1.0) if clip else out).to(image.dtype)

    return batched, restore


def _array_to_planes(image: np.ndarray) -> tuple[Tensor, Callable[[Tensor, bool], np.ndarray]]:
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
    _check_finite(values)
    planes = values.permute(2, 0, 1)[None]  # (1, C, H, W)

    def restore(out: Tensor, clip: bool) -> np.ndarray:
        result = out[0].permute(1, 2, 0).cpu().double().numpy()  # (H, W, C)
        if scale is not None:
            result = np.round(np.clip(result, 0.0, 1.0) * scale)
        elif clip:
            result = np.clip(result, 0.0, 1.0)
        result = result.astype(image.dtype)
        if alpha is not None:
            result = np.concatenate([result, alpha], axis=2)
        return result[:, :, 0] if image.ndim == 2 else result

    return planes, restore


def denoise(
    image: ImageT,
    sigma: float | None = None,
    model: str | os.PathLike | nn.Module | None = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    *,
    overlap: int | None = None,
    clip: bool = True,
) -> ImageT:
    """Remove additive white Gaussian noise of level ``sigma`` from an image.

    Args:
        image: a numpy array (H, W) or (H, W, C), uint8, uint16 or float in [0, 1] (a 2- or
            4-channel array's last channel is alpha and comes back unchanged); or a torch
            tensor (C, H, W) or (B, C, H, W), float in [0, 1] or uint8.
        sigma: noise standard deviation on the 0-255 scale, whatever the image's dtype. With
            ``model=None`` it picks the shipped weights trained for it (25 when None).
        model: None (the weights for ``sigma``), a pretrained name, a ``.safetensors`` file, an
            ``nn.Module``, or ``"bm3d"`` / ``"nlm"``. A grey model denoises RGB channel by
            channel; a 3-channel model denoises RGB jointly.
        device: where the network runs (``"cpu"``, ``"cuda"``).
        tile: tile side in pixels to bound memory on large images; None runs the whole image
            at once. Tiles overlap by the model's receptive-field radius
            (:func:`context_radius`: 112 px for N3Net, 17 for DnCNN-17) and sit on N3Net's
            patch grid, so the result matches the whole-image output up to float rounding.
        overlap: override that overlap (faster, slightly different; ``tile`` must exceed
            ``2 * overlap``, plus ``2 * (stride - 1)`` for N3Net-shaped models).
        clip: clip float results to [0, 1] (integer results always are).

    Returns:
        The denoised image, of the input's type, shape, dtype (and device for tensors).

    Raises:
        ValueError: bad image, sigma <= 0, no weights for ``sigma`` (the message lists the
            sigmas that exist), a model trained for another sigma, or an unusable device.
        FileNotFoundError: ``model`` is a path that does not exist.

    Example:
        >>> import numpy as np
        >>> noisy = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
        >>> denoise(noisy, sigma=25).dtype  # doctest: +SKIP
        dtype('uint8')
    """
    return Denoiser(model, sigma, device)(image, tile, overlap, clip=clip)
