"""Import the authors' pretrained Gaussian-denoising N3Net checkpoints (σ = 25, 50, 70).

The authors' files (``pretrained_sigma*/checkpoint/051_ckpt.t7``) are legacy ``torch.save``
pickles of ``{"net": state_dict, "epoch": 51}`` with 140 float32 tensors. They are read with
``torch.load(..., weights_only=True)`` (no code runs), checked key by key and shape by shape,
renamed to n3net's modules and loaded into :class:`~n3net.models.n3net.N3NetDenoiser` with its
defaults, which reproduce the authors' network: averaged patch temperature ``0.1 * exp(l)``,
batch-normalised logits, output ``[Y, N_1 - Y, ...]``, no global skip.

Renaming (authors -> n3net):

* ``blocks.{i}.*`` -> ``blocks.{i}.*``; ``blocks.{i}.bn1.*`` is dropped (never applied);
* ``nls.{i}.embedcnn.*`` -> ``n3.{i}.embedding.*``;
* ``nls.{i}.tempcnn.*`` -> ``n3.{i}.temperature_net.*``;
* ``nls.{i}.n3aggregation.aggregation.nnn.bn.*`` -> ``n3.{i}.logits_bn.*``.

``num_batches_tracked`` entries are optional (the authors' files have none).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor

from n3net.models._registry import save_model
from n3net.models.n3net import N3NetDenoiser

__all__ = [
    "convert_official_state_dict",
    "import_official",
    "load_official",
    "official_keys",
    "read_official_checkpoint",
]

_RULES = (
    (re.compile(r"^nls\.(\d+)\.embedcnn\."), r"n3.\1.embedding."),
    (re.compile(r"^nls\.(\d+)\.tempcnn\."), r"n3.\1.temperature_net."),
    (re.compile(r"^nls\.(\d+)\.n3aggregation\.aggregation\.nnn\.bn\."), r"n3.\1.logits_bn."),
)
_INVERSE = (
    (re.compile(r"^n3\.(\d+)\.embedding\."), r"nls.\1.embedcnn."),
    (re.compile(r"^n3\.(\d+)\.temperature_net\."), r"nls.\1.tempcnn."),
    (re.compile(r"^n3\.(\d+)\.logits_bn\."), r"nls.\1.n3aggregation.aggregation.nnn.bn."),
)
_UNUSED = re.compile(r"^blocks\.\d+\.bn1\.")
_TRACKED = ".num_batches_tracked"
_SHOW = 3  # names listed in an error message


def _official_model() -> N3NetDenoiser:
    """The n3net model with the authors' configuration (the constructor's defaults)."""
    return N3NetDenoiser()


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, repl in rules:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return key


def official_keys() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' state dict (140 tensors; no ``num_batches_tracked``)."""
    spec: dict[str, tuple[int, ...]] = {}
    for key, value in _official_model().state_dict().items():
        if key.endswith(_TRACKED):
            continue
        spec[_rename(key, _INVERSE)] = tuple(value.shape)
        if key.endswith(".conv1.bias"):  # the unused bn1 of each DnCNN block
            prefix = key[: -len("conv1.bias")] + "bn1."
            for name in ("weight", "bias", "running_mean", "running_var"):
                spec[prefix + name] = tuple(value.shape)
    return spec


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" (+{len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def _check_keys(state: dict[str, Tensor]) -> None:
    spec = official_keys()
    problems = []
    unknown = sorted(k for k in state if k not in spec)
    missing = sorted(k for k in spec if k not in state)
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {spec[k]})"
        for k in spec
        if k in state and tuple(state[k].shape) != spec[k]
    ]
    if unknown:
        problems.append(f"unknown keys: {_listing(unknown)}")
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if shapes:
        problems.append(f"wrong shapes: {_listing(shapes)}")
    if problems:
        raise ValueError(
            "not the authors' Gaussian-denoising N3Net checkpoint: " + "; ".join(problems)
        )


def read_official_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read and check one of the authors' checkpoints without running any pickled code.

    Accepts ``{"net": state_dict, "epoch": n}`` or a bare state dict; ``num_batches_tracked``
    entries are set aside (returned too, checked only for belonging to a batch norm).

    Returns:
        The authors' state dict (their key names), float32 CPU tensors.

    Raises:
        ValueError: a pickle that needs code, not a checkpoint, or unknown / missing keys or wrong
            shapes (a few of each named).
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        why = f"it needs code to unpickle ({found.group(1)})" if found else "unreadable pickle"
        raise ValueError(
            f"{path} is not a plain checkpoint of tensors: {why}; refusing to load it"
        ) from None
    except Exception as error:  # truncated or foreign files fail in many ways inside torch.load
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from None
    if isinstance(obj, dict) and "net" in obj:
        obj = obj["net"]
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{path} holds no state dict (expected {{'net': state_dict, ...}})")
    state = {k: v.detach().to(torch.float32) for k, v in obj.items() if not k.endswith(_TRACKED)}
    _check_keys(state)
    bn_prefixes = {k[: -len("running_mean")] for k in state if k.endswith("running_mean")}
    for key, value in obj.items():
        if key.endswith(_TRACKED):
            if key[: -len("num_batches_tracked")] not in bn_prefixes:
                raise ValueError(f"not the authors' N3Net checkpoint: unknown keys: {key}")
            state[key] = value.detach().to(torch.long)
    return state


def convert_official_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a checked authors' state dict to n3net's keys (drops ``bn1``; fills counters)."""
    out = {_rename(k, _RULES): v for k, v in state.items() if not _UNUSED.match(k)}
    for key, value in _official_model().state_dict().items():
        if key.endswith(_TRACKED) and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def load_official(path: str | os.PathLike[str]) -> N3NetDenoiser:
    """Load the authors' checkpoint into an :class:`N3NetDenoiser` (eval mode, CPU)."""
    model = _official_model()
    model.load_state_dict(convert_official_state_dict(read_official_checkpoint(path)), strict=True)
    return model.eval()


def import_official(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    sigma: float | None = None,
    overwrite: bool = False,
) -> N3NetDenoiser:
    """Convert the authors' checkpoint into an n3net model file (safetensors).

    Args:
        checkpoint: the authors' ``.t7`` file.
        output: destination ``.safetensors`` file.
        sigma: noise level the weights were trained for (0-255 scale), stored as metadata.
        overwrite: replace an existing ``output``.

    Returns:
        The loaded model (eval mode).
    """
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"output must be a .safetensors file, got {output}")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    model = load_official(checkpoint)
    extra = {"source": "imported from the authors' checkpoint"}
    if sigma is not None:
        extra["sigma"] = f"{sigma:g}"
    save_model(model, output, extra)
    return model
