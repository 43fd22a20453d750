"""n3net: Neural Nearest Neighbors Networks (Plötz & Roth, NeurIPS 2018) in pure PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

# Heavy names (they import torch) load on first access, so `import n3net` stays light.
_LAZY = {
    "denoise": "n3net.inference",
    "Denoiser": "n3net.inference",
    "Restorer": "n3net.inference",
    "upscale": "n3net.inference",
    "Upscaler": "n3net.inference",
    "load_model": "n3net.models",
    "create_model": "n3net.models",
    "list_pretrained": "n3net.models",
    "neural_knn": "n3net.knn",
    "NeuralKNN": "n3net.knn",
    "N3Block": "n3net.blocks",
    "N3Block2d": "n3net.blocks",
    "retain_freed_memory": "n3net._memory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def sample_image_path(noisy: bool = True) -> Path:
    """Return the path of the bundled sample image (a 256 x 256 grey BSDS500 crop).

    Args:
        noisy: the copy with Gaussian noise of sigma 25 added (seeded, saved as 8-bit PNG);
            False gives the clean image.

    Example:
        >>> sample_image_path().name
        'sample_gray_noisy25.png'
    """
    import importlib.resources

    name = "sample_gray_noisy25.png" if noisy else "sample_gray.png"
    return Path(str(importlib.resources.files("n3net").joinpath("assets", name)))
