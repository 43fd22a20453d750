"""Image files in and out for denoising users: PNG, JPEG, TIFF (and BMP), 8 and 16 bit.

Pixel data lives in float32 arrays scaled to [0, 1]; the bit depth and the alpha channel are kept
beside it so that :func:`write_image` can give the user back a file like the one they gave us.

Axis legend: ``H, W`` image size, ``C`` colour channels (1 grey or 3 RGB; alpha is kept apart).

Layouts: numpy arrays are ``(H, W)`` or ``(H, W, C)``; torch tensors are ``(C, H, W)`` or
``(1, C, H, W)`` (the network's layout).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from n3net._files import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadedImage",
    "image_size",
    "list_images",
    "read_image",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
# Modes converted on reading, to the mode we then decode. Colour spaces go to RGB, 1-bit to grey.
_CONVERT = {
    "1": "L",
    "La": "LA",
    "PA": "RGBA",
    "RGBX": "RGB",
    "RGBa": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")
# info keys worth carrying to the written file (EXIF is left out: orientation is already applied).
_KEPT_INFO = ("icc_profile", "dpi")


@dataclass
class LoadedImage:
    """An image read by :func:`read_image`.

    Attributes:
        data: pixel values in [0, 1], colour channels only.
        alpha: opacity in [0, 1], or None when the file has no alpha channel or transparency.
        bit_depth: 8 or 16, the precision of the file's samples.
        mode: the file's PIL mode before any conversion (e.g. ``"P"``, ``"I;16"``, ``"RGBA"``).
        format: PIL's format name (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...), or None.
        info: a copy of PIL's ``info`` dict (ICC profile, dpi, ...); pass it to :func:`write_image`.

    Shape:
        data: (H, W, C) float32 with C = 1 or 3; alpha: (H, W) float32.
    """

    data: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """Number of colour channels, 1 (grey) or 3 (RGB)."""
        return int(self.data.shape[2])


def _rawmodes(image: Image.Image) -> list[str]:
    """Return the raw modes of the undecoded tiles (empty once the image is loaded)."""
    modes = []
    for tile in image.tile:
        args = tile[3] if isinstance(tile, tuple) else tile.args
        args = args if isinstance(args, tuple) else (args,)
        modes.extend(a for a in args if isinstance(a, str))
    return modes


def _decode(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Convert an opened, orientation-corrected PIL image to (data, alpha, bit_depth)."""
    mode = image.mode
    if mode in _CONVERT:
        image = image.convert(_CONVERT[mode])
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("LA" if mode == "L" else "RGBA")
    mode = image.mode

    if mode in _MODES_16 or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"32-bit integer values outside the 16-bit range (mode {mode})")
        return (values / 65535.0).astype(np.float32)[:, :, None], None, 16
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(f"unsupported image mode {mode!r}")
    values = np.asarray(image).astype(np.float32) / 255.0
    if values.ndim == 2:
        return values[:, :, None], None, 8
    colour = 1 if mode in ("L", "LA") else 3
    alpha = values[:, :, colour] if mode in ("LA", "RGBA") else None
    return np.ascontiguousarray(values[:, :, :colour]), alpha, 8


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file into float32 values in [0, 1], honouring its EXIF orientation.

    Palette images become RGB (RGBA when they carry transparency), 1-bit images grey, CMYK and
    other colour spaces RGB. 16-bit grey PNG/TIFF keep their 16 bits. Pillow decodes 16-bit
    colour only to 8 bits, so such files are refused rather than silently truncated.

    Args:
        path: the image file.

    Returns:
        The pixels, alpha, bit depth, original mode, format and PIL info of the file.

    Raises:
        ValueError: one line, ``cannot read image 'path': reason``, for missing, corrupt or
            unsupported files.

    Shape:
        data: (H, W, C) with C = 1 or 3, alpha: (H, W); H, W after EXIF orientation.
    """
    try:
        with Image.open(path) as image:
            mode, fmt, info = image.mode, image.format, dict(image.info)
            if mode in ("RGB", "RGBA") and any(";16" in raw for raw in _rawmodes(image)):
                raise ValueError(
                    "16-bit colour or grey+alpha is not supported (Pillow decodes it to "
                    "8 bits); convert it to 8-bit or to 16-bit grey first"
                )
            image.load()
            oriented = ImageOps.exif_transpose(image)
            data, alpha, bit_depth = _decode(oriented)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"cannot read image '{path}': {reason}") from error
    return LoadedImage(data, alpha, bit_depth, mode, fmt, info)


def _to_hwc(data: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Return ``data`` as a float64 (H, W, C) array; tensors are (C, H, W) or (1, C, H, W)."""
    if isinstance(data, torch.Tensor):
        array = data.detach().to("cpu", torch.float64).numpy()
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)
    else:
        array = np.asarray(data, dtype=np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"{name} must be (H, W) or (H, W, C), got shape {tuple(array.shape)}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _quantise(array: np.ndarray, bit_depth: int) -> np.ndarray:
    """Clip to [0, 1] and round to integers of ``bit_depth`` bits."""
    top = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(array, 0.0, 1.0) * top).astype(dtype)


def write_image(
    path: str | os.PathLike,
    data: np.ndarray | torch.Tensor,
    alpha: np.ndarray | torch.Tensor | None = None,
    bit_depth: int = 8,
    overwrite: bool = False,
    *,
    info: dict[str, Any] | None = None,
    quality: int = 95,
) -> Path:
    """Write float pixels in [0, 1] to a PNG, JPEG, TIFF or BMP file chosen by extension.

    Values are clipped to [0, 1] and rounded to the bit depth. 16-bit output is possible for grey
    PNG and TIFF without alpha (Pillow cannot write 16-bit colour or 16-bit grey with alpha);
    JPEG holds neither 16 bits nor alpha, BMP no alpha. Any case the format cannot hold raises
    ValueError instead of silently dropping information.

    Args:
        path: output file; its extension picks the format.
        data: grey or RGB pixels; numpy (H, W[, C]), torch (C, H, W) or (1, C, H, W).
        alpha: optional opacity in [0, 1].
        bit_depth: 8 or 16.
        overwrite: replace an existing file instead of raising FileExistsError.
        info: PIL info from :class:`LoadedImage`; its ICC profile and dpi are written back.
        quality: JPEG quality (1-95; ignored for other formats).

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: unknown extension, bad shapes or bit depth, or a combination the format
            cannot hold.

    Shape:
        data: (H, W), (H, W, C), (C, H, W) or (1, C, H, W) with C = 1 or 3; alpha: (H, W).
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output extension {path.suffix!r} for '{path}'")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output '{path}' exists; pass --overwrite to replace it")

    array = _to_hwc(data, "data")
    height, width, channels = array.shape
    if channels not in (1, 3):
        raise ValueError(f"data must have 1 or 3 colour channels, got {channels}")
    if alpha is not None:
        alpha_array = _to_hwc(alpha, "alpha")
        if alpha_array.shape != (height, width, 1):
            raise ValueError(
                f"alpha must be (H, W) = {(height, width)}, got {tuple(alpha_array.shape[:2])}"
            )
        array = np.concatenate([array, alpha_array], axis=2)
    if fmt in ("JPEG", "BMP") and alpha is not None:
        raise ValueError(f"{fmt} cannot hold an alpha channel; use a .png or .tif output")
    if fmt == "JPEG" and bit_depth == 16:
        raise ValueError("JPEG cannot hold 16-bit samples; use a .png or .tif output")
    if bit_depth == 16 and (array.shape[2] != 1 or fmt not in ("PNG", "TIFF")):
        raise ValueError(
            "16-bit output is supported only for grey PNG/TIFF without alpha "
            "(Pillow cannot write 16-bit colour or alpha); use bit_depth=8"
        )

    pixels = _quantise(array, bit_depth)
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    options: dict[str, Any] = {k: info[k] for k in _KEPT_INFO if info and k in info}
    if fmt == "JPEG":
        options["quality"] = quality
    with atomic_write(path) as temporary:  # a failed write leaves no half-written image
        image.save(temporary, format=fmt, **options)
    return path


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Return a file's ``(height, width)`` after EXIF orientation, reading only its header.

    Raises:
        ValueError: one line, ``cannot read image 'path': reason``.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"cannot read image '{path}': {reason}") from error
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """List the image files of a folder (not recursive), sorted by file name.

    Args:
        folder: directory to scan; extensions png, jpg, jpeg, tif, tiff, bmp in any case.

    Returns:
        Paths sorted by their file name.

    Raises:
        NotADirectoryError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a directory: '{folder}'")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.name)
