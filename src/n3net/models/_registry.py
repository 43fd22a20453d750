"""Model registry and the safetensors model-file format.

A model file is a safetensors file holding the full ``state_dict`` (batch-norm buffers included)
and, in its string metadata, what rebuilds the network:

* ``n3net_arch``: the registry name (``"n3net"``, ``"dncnn"``, ...);
* ``n3net_config``: the constructor keyword arguments as JSON;
* ``n3net_version``: the n3net version that wrote the file;
* ``channels`` (from the config, when it has one) and any extras, e.g. ``sigma`` (``"25"``) or
  ``source``.

Weights shipped with n3net live in the package folder ``n3net/models/weights/`` as
``<name>.safetensors`` beside a ``<name>.md`` model card. Weights are never pickled: PyTorch
``.pt``/``.pth`` files (e.g. training checkpoints) are not model files.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from n3net._files import atomic_write

__all__ = [
    "ArchInfo",
    "arch_info",
    "create_model",
    "list_architectures",
    "list_pretrained",
    "load_model",
    "model_metadata",
    "register_model",
    "save_model",
]

Factory = Callable[..., nn.Module]
F = TypeVar("F", bound=Factory)


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows about an architecture besides its factory.

    Attributes:
        name: the registry name.
        task: what it restores: ``"denoise"``, or ``"sr"`` (super-resolution: the network
            reads the bicubic-upsampled luminance and returns it restored, at the same size), or
            ``"correspondences"`` (inlier logits of sets of matches, (B, N, 4) -> (B, N); the
            pose baselines give their own pose too, see :mod:`n3net.models.geometric`).
        needs_weights: False for methods that run without trained weights (the classic
            baselines): :func:`load_model` then builds them from their name.
        conditions: constructor arguments the user's request sets, e.g. ``("sigma",)`` for a
            classic denoiser told the noise level (networks trained for one sigma take none).
    """

    name: str
    task: str = "denoise"
    needs_weights: bool = True
    conditions: tuple[str, ...] = ()


_REGISTRY: dict[str, Factory] = {}
_INFO: dict[str, ArchInfo] = {}
_RESERVED = ("n3net_arch", "n3net_config", "n3net_version")
_PICKLE_SUFFIXES = (".pt", ".pth", ".t7", ".ckpt", ".tar", ".pkl", ".bin")


def register_model(
    name: str,
    *,
    task: str = "denoise",
    needs_weights: bool = True,
    conditions: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Register a factory ``(**config) -> nn.Module`` under an architecture name.

    The keywords fill the architecture's :class:`ArchInfo`. Models describe their geometry
    themselves: ``receptive_radius`` (pixels on each side that reach one output pixel),
    ``patch_grid`` (``(patch_size, stride)`` their non-local blocks cut, or None), ``scale``
    (output size / input size), ``min_size`` (smallest input side) and
    ``memory_per_pixel`` (bytes one input pixel costs in an inference forward pass).

    Example:
        >>> @register_model("tiny-example")
        ... def tiny(**config):
        ...     return nn.Identity()
        >>> "tiny-example" in list_architectures()
        True
        >>> _ = _REGISTRY.pop("tiny-example"), _INFO.pop("tiny-example")
    """

    def decorate(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = factory
        _INFO[name] = ArchInfo(name, task, needs_weights, tuple(conditions))
        return factory

    return decorate


def list_architectures() -> list[str]:
    """Return the registered architecture names, sorted."""
    return sorted(_REGISTRY)


def arch_info(arch: str) -> ArchInfo:
    """Return a registered architecture's :class:`ArchInfo`.

    Example:
        >>> arch_info("dncnn").needs_weights
        True
    """
    if arch not in _INFO:
        raise ValueError(
            f"unknown architecture {arch!r}; available: {', '.join(list_architectures())}"
        )
    return _INFO[arch]


def create_model(arch: str, **config: object) -> nn.Module:
    """Build an (untrained) model of a registered architecture.

    The model records its registry name in ``model.arch`` and its construction keyword
    arguments in ``model.config`` (a dict), which :func:`save_model` writes into the file.
    """
    if arch not in _REGISTRY:
        raise ValueError(
            f"unknown architecture {arch!r}; available: {', '.join(list_architectures())}"
        )
    model = _REGISTRY[arch](**config)
    model.arch = arch
    if not isinstance(getattr(model, "config", None), dict):
        model.config = dict(config)
    return model


def _weights_dir() -> Traversable:
    """The package folder of shipped weights (tests monkeypatch this)."""
    return importlib.resources.files("n3net.models").joinpath("weights")


def list_pretrained() -> list[str]:
    """Return the names of the shipped weight files (``<name>.safetensors``), sorted."""
    folder = _weights_dir()
    if not folder.is_dir():
        return []
    suffix = ".safetensors"
    return sorted(f.name[: -len(suffix)] for f in folder.iterdir() if f.name.endswith(suffix))


def _trained_hint() -> str:
    names = list_pretrained()
    trained = ", ".join(names) if names else "none shipped yet"
    return f"trained models: {trained}; or give the path of a .safetensors model file"


@contextlib.contextmanager
def _resolve(name_or_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the file path of a pretrained name or a model file path, or raise a clear error."""
    text = os.fspath(name_or_path)
    if text in list_pretrained():
        resource = _weights_dir().joinpath(f"{text}.safetensors")
        with importlib.resources.as_file(resource) as path:
            yield Path(path)
        return
    path = Path(text)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(
            f"{text} is a PyTorch checkpoint ({path.suffix}), not an n3net model file: model files "
            "are .safetensors written by n3net.models.save_model (import the authors' .t7 "
            "files with `n3net import-official`)"
        )
    if path.is_file():
        yield path
        return
    if text in _REGISTRY:
        raise ValueError(f"architecture {text!r} has no trained weights; {_trained_hint()}")
    if path.suffix or os.sep in text or "/" in text:
        raise FileNotFoundError(f"model file not found: {text}")
    raise ValueError(f"unknown model {text!r}; {_trained_hint()}")


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a safetensors model file ({error})") from None
    if "n3net_arch" not in metadata or "n3net_config" not in metadata:
        raise ValueError(f"{path} is not an n3net model file (no n3net_arch/n3net_config metadata)")
    return dict(metadata)


def model_metadata(name_or_path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a model file's metadata without loading its tensors.

    Example: ``model_metadata("n3net-gray-sigma25")["sigma"] == "25"``.
    """
    with _resolve(name_or_path) as path:
        return _read_metadata(path)


def load_model(
    name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu", **conditions: object
) -> nn.Module:
    """Load a trained model by pretrained name or ``.safetensors`` path, in eval mode.

    The architecture is rebuilt from the file's metadata and the weights load with
    ``strict=True``. The file's metadata is kept in ``model.metadata``. An architecture that
    needs no weights (``"bm3d"``, ``"nlm"``) is built from its name, with ``conditions`` (e.g.
    ``sigma=50``) passed to its constructor; other models take no ``conditions``.

    Raises:
        ValueError: an architecture name without weights, an unknown name, a PyTorch
            checkpoint, or a file that is not an n3net model file.
        FileNotFoundError: a path that does not exist.
    """
    from safetensors.torch import load_file

    text = os.fspath(name_or_path)
    if text in _INFO and not _INFO[text].needs_weights and text not in list_pretrained():
        unknown = set(conditions) - set(_INFO[text].conditions)
        if unknown:
            raise ValueError(f"model {text!r} takes no {', '.join(sorted(unknown))}")
        model = create_model(text, **conditions)
        model.metadata = {"n3net_arch": text, "n3net_config": json.dumps(model.config)}
        return model.to(device).eval()
    if conditions:
        raise ValueError(f"model {text!r} takes no {', '.join(sorted(conditions))}")
    with _resolve(name_or_path) as path:
        metadata = _read_metadata(path)
        state = load_file(str(path), device="cpu")
    config = json.loads(metadata["n3net_config"])
    model = create_model(metadata["n3net_arch"], **config)
    model.load_state_dict(state, strict=True)
    model.metadata = metadata
    return model.to(device).eval()


def save_model(
    model: nn.Module, path: str | os.PathLike[str], extra_metadata: dict[str, str] | None = None
) -> Path:
    """Write a model file: its state dict as safetensors plus the metadata that rebuilds it.

    Args:
        model: a model with ``arch`` and ``config`` attributes (see :func:`create_model`).
        path: destination, normally ``*.safetensors``; replaced atomically if it exists.
        extra_metadata: more string entries, e.g. ``{"sigma": "25"}``.

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    from n3net import __version__

    arch, config = getattr(model, "arch", None), getattr(model, "config", None)
    if not isinstance(arch, str) or not isinstance(config, dict):
        raise ValueError("model needs .arch and .config attributes; build it with create_model()")
    metadata = {
        "n3net_arch": arch,
        "n3net_config": json.dumps(config),
        "n3net_version": __version__,
    }
    if "channels" in config:
        metadata["channels"] = str(config["channels"])
    for key, value in (extra_metadata or {}).items():
        if key in _RESERVED:
            raise ValueError(f"extra_metadata must not set {key!r}")
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"extra_metadata must map str to str, got {key!r}: {value!r}")
        metadata[key] = value
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_write(path) as tmp:  # safetensors creates 0600 files; atomic_write fixes the mode
        save_file(tensors, str(tmp), metadata=metadata)
    return path
