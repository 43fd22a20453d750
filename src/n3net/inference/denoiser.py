"""Gaussian denoising: :func:`denoise` and the reusable :class:`Denoiser`.

Both are re-exported as ``n3net.denoise`` and ``n3net.Denoiser``. ``n3net.denoise(image,
sigma=25)`` picks the trained weights for that noise level (:func:`~n3net.inference.catalog.
default_model`), converts the image to the model's (B, C, H, W) float layout in [0, 1], runs it
(tiled automatically when it is large) and gives back the input's type, layout, dtype and
device. The classic baselines ``"bm3d"`` and ``"nlm"`` are models of the registry told the
noise level; they work like a grey network.

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import os
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from n3net._checks import check_sigma as _valid_sigma
from n3net.inference.catalog import DEFAULT_SIGMA, default_model, metadata_sigma
from n3net.inference.restore import DEFAULT_MEMORY_LIMIT_MB, Restorer

__all__ = ["Denoiser", "SigmaMismatchError", "denoise"]

ImageT = TypeVar("ImageT", np.ndarray, Tensor)
ModelSpec = str | os.PathLike | nn.Module | None


class SigmaMismatchError(ValueError):
    """A model file's training sigma differs from the sigma asked for."""


def _load(model: ModelSpec, sigma: float | None) -> tuple[nn.Module, str, float | None]:
    """Return the module, its name, and the sigma it was built for (classic models)."""
    from n3net.models import arch_info, list_architectures, load_model

    if model is None:
        model = default_model(DEFAULT_SIGMA if sigma is None else sigma)
    if isinstance(model, nn.Module):
        return model, type(model).__name__, None
    if not isinstance(model, str | os.PathLike):
        raise ValueError(f"model must be a name, a file or an nn.Module, got {model!r}")
    name = os.fspath(model)
    if name in list_architectures():
        _check_task(name, arch_info(name).task)
        if "sigma" in arch_info(name).conditions:
            told = DEFAULT_SIGMA if sigma is None else sigma
            return load_model(name, sigma=told), name, told
    module = load_model(model, device="cpu")
    arch = (getattr(module, "metadata", None) or {}).get("n3net_arch", "")
    if arch in list_architectures():
        _check_task(name, arch_info(arch).task)
    return module, name, None


def _check_task(name: str, task: str) -> None:
    """Refuse a model of another task (a super-resolution or correspondence model)."""
    if task != "denoise":
        raise ValueError(
            f"model {name} is a {task} model, not a denoiser; see `n3net models` for denoisers"
        )


class Denoiser(Restorer):
    """A loaded denoiser, ready to be applied to many images.

    Args:
        model: None for the shipped weights trained for ``sigma``; a pretrained name; a
            ``.safetensors`` model file; an ``nn.Module`` mapping noisy (B, C, H, W) in [0, 1]
            to its estimate; or a registered model needing no weights (``"bm3d"``, ``"nlm"``).
        sigma: noise level on the 0-255 scale. With ``model=None`` it picks the weights (25 when
            also None); with a model file whose metadata names its training sigma, a different
            value is an error unless ``check_sigma=False``; models told the noise level (the
            classic baselines) get it (25 when None). Networks have no sigma input: it never
            changes what a network computes.
        device: ``"cpu"``, ``"cuda"``, ... where the model runs.
        check_sigma: refuse a model trained for another sigma than ``sigma``.
        channels_last, memory_limit: as in :class:`~n3net.inference.restore.Restorer`.

    Attributes:
        name: the model's name, file or class name.
        sigma: the sigma asked for, else the model's training sigma, else None.
        trained_sigma: the model's training sigma from its metadata (None when unknown).

    Example:
        >>> den = Denoiser("n3net-gray-sigma25")  # doctest: +SKIP
        >>> clean = den(noisy_uint8_array)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: ModelSpec = None,
        sigma: float | None = None,
        device: str | torch.device = "cpu",
        *,
        check_sigma: bool = True,
        channels_last: bool | None = None,
        memory_limit: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ) -> None:
        from n3net._checks import resolve_device

        resolve_device(device)  # an unusable device fails before a model loads
        sigma = None if sigma is None else _valid_sigma(sigma)
        module, name, told = _load(model, sigma)
        self.trained_sigma = metadata_sigma(getattr(module, "metadata", None))
        if check_sigma and None not in (sigma, self.trained_sigma) and sigma != self.trained_sigma:
            raise SigmaMismatchError(
                f"model {name} was trained for sigma {self.trained_sigma:g}, not "
                f"{sigma:g}; ask for sigma {self.trained_sigma:g} or choose another model"
            )
        self.sigma = next((s for s in (told, sigma, self.trained_sigma) if s is not None), None)
        super().__init__(
            module, device, name=name, channels_last=channels_last, memory_limit=memory_limit
        )

    def __repr__(self) -> str:
        sigma = "None" if self.sigma is None else f"{self.sigma:g}"
        return f"Denoiser({self.name!r}, sigma={sigma}, channels={self.channels}, {self.device})"

    def denoise_tensor(
        self, x: Tensor, tile: int | None = None, context: int | None = None
    ) -> Tensor:
        """:meth:`~n3net.inference.restore.Restorer.restore_tensor` under its old name."""
        return self.restore_tensor(x, tile, context)


def denoise(
    image: ImageT,
    sigma: float | None = None,
    model: ModelSpec = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    *,
    context: int | None = None,
    clip: bool = True,
) -> ImageT:
    """Remove additive white Gaussian noise of level ``sigma`` from an image.

    Args:
        image: a numpy array (H, W) or (H, W, C), uint8, uint16 or float in [0, 1] (a 2- or
            4-channel array's last channel is alpha and comes back unchanged); or a torch
            tensor (C, H, W) or (B, C, H, W), float in [0, 1] or uint8. A float image with
            values above 3 (e.g. 0-255 floats) is refused with a message.
        sigma: noise standard deviation on the 0-255 scale, whatever the image's dtype. With
            ``model=None`` it picks the shipped weights trained for it (25 when None).
        model: None (the weights for ``sigma``), a pretrained name, a ``.safetensors`` file, an
            ``nn.Module``, or ``"bm3d"`` / ``"nlm"``. A grey model denoises RGB channel by
            channel; a 3-channel model denoises RGB jointly.
        device: where the model runs (``"cpu"``, ``"cuda"``).
        tile: None tiles large images automatically (1 GB per forward pass); 0 runs the whole
            image at once; N uses N x N tiles (at least the model's receptive field, 225 px for
            N3Net). Tiles carry the receptive-field radius as context on each side and sit on
            N3Net's patch grid, so the result matches the whole-image one up to float rounding.
        context: less context per tile (faster, slightly different).
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
        >>> denoise(noisy, sigma=25, model="dncnn17-gray-sigma25").dtype
        dtype('uint8')
    """
    return Denoiser(model, sigma, device)(image, tile, context, clip=clip)
