"""Checks shared by every layer: the noise level, the device, and the optional extras.

Each raises a one-line error naming the argument and the value, so that the command line can
print it as it is.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `import n3net` stays light; torch is imported where a device is resolved
    import torch

__all__ = ["MissingExtraError", "check_sigma", "require_extra", "resolve_device"]


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


def check_sigma(sigma: Any, name: str = "sigma") -> float:
    """Return ``float(sigma)``, refusing anything but a finite number > 0 (0-255 scale).

    Example:
        >>> check_sigma("25")
        25.0
        >>> check_sigma(0)
        Traceback (most recent call last):
        ...
        ValueError: sigma must be a finite number > 0 (0-255 scale), got 0
    """
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (0-255 scale), got {sigma!r}")
    return value


def resolve_device(device: Any) -> torch.device:
    """Return ``torch.device(device)``, refusing accelerators torch cannot use here.

    Raises:
        ValueError: an unknown device string, or CUDA / MPS requested but unavailable.
    """
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} (use cpu or cuda)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available to torch")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} requested but MPS is not available to torch")
    return resolved


def require_extra(module: str, needed_by: str, extra: str = "eval") -> ModuleType:
    """Import an optional dependency or raise :class:`MissingExtraError` naming its extra.

    Args:
        module: the module to import, e.g. ``"bm3d"`` or ``"skimage.metrics"``.
        needed_by: what needs it, for the message (``"the bm3d model"``).
        extra: the n3net extra that installs it.

    Example:
        >>> require_extra("math", "this example").__name__
        'math'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingExtraError(
            f"{needed_by} needs the {top!r} package: pip install 'n3net[{extra}]'"
        ) from None
