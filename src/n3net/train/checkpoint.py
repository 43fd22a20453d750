"""Training checkpoints: atomic writes and everything an exact resume needs.

A checkpoint is a dict of tensors and plain Python values only (so ``torch.load(...,
weights_only=True)`` reads it): the model and optimiser state dicts, the step, the elapsed training
time, the best validation result with its weights (``best``: the task's ``metric``, its ``value``,
``step`` and ``model``), the config, and every RNG state (torch CPU,
CUDA, numpy, Python ``random``). The data stream itself is counter-based (see
:mod:`n3net.train.data`): its state is the seed and the step.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_save",
    "capture_rng_states",
    "load_checkpoint",
    "restore_rng_states",
]

CHECKPOINT_VERSION = 2
# Version 1 named the best result "psnr" and the last one "last_val_psnr"; it still loads.
READABLE_VERSIONS = (1, 2)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable; not every platform can open a directory."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_save(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` with ``torch.save`` so that ``path`` is always complete or untouched.

    The data go to a temporary file in the same folder, are flushed and fsync'ed, and the file is
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows). On any error the
    temporary file is removed and ``path`` keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def capture_rng_states() -> dict[str, Any]:
    """Return the global RNG states as tensors and plain values (weights_only-loadable)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    python_state = states["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["state"]), python_state["gauss_next"])
    )
    cuda_states = states.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with ``weights_only=True``; check its format version."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{path} is not an n3net training checkpoint (version {CHECKPOINT_VERSION})"
        )
    if state["version"] == 1:
        best = state["best"]
        state["best"] = {"value": best["psnr"], "step": best["step"], "model": best["model"]}
        state["last_val"] = state.pop("last_val_psnr", None)
    return state
