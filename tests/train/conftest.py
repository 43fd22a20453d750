"""Fixtures for the training tests: tiny image folders and tiny run configs, one CPU thread."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import n3net.train.loop as loop
from n3net.train.config import RunConfig

# A 3-layer DnCNN with 8 features: milliseconds per step on 16x16 crops.
TINY_MODEL: dict[str, Any] = {"arch": "dncnn", "kwargs": {"depth": 3, "features": 8}}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: fast on a busy 2-core machine and the same in every process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with ``imgs/``: 7 grey images of different sizes and one RGB image."""
    root = tmp_path_factory.mktemp("tiny_data")
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(7):
        height, width = 20 + 3 * index, 36 - 2 * index
        ramp = np.add.outer(np.arange(height), np.arange(width)) * 4 % 256
        noise = rng.integers(0, 40, (height, width))
        Image.fromarray(((ramp + noise) % 256).astype(np.uint8)).save(folder / f"g{index}.png")
    rgb = rng.integers(0, 256, (30, 26, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    return root


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def tiny_config(root: Path, out_dir: Path, **sections: dict[str, Any]) -> RunConfig:
    """A tiny CPU run: 6 training + 2 validation images, 16x16 crops, batch 4, 12 steps."""
    values: dict[str, Any] = {
        "model": copy.deepcopy(TINY_MODEL),
        "data": {
            "root": str(root),
            "train_dirs": ["imgs"],
            "val_images": 2,
            "crop_size": 16,
            "crops_per_image": 4,
        },
        "train": {
            "batch_size": 4,
            "max_steps": 12,
            "device": "cpu",
            "out_dir": str(out_dir),
            "tensorboard": False,
            "progress": "none",
            "log_every": 2,
            "val_every": 4,
            "ckpt_every": 0,
            "ckpt_minutes": 0,
        },
    }
    _merge(values, sections)
    return RunConfig.from_dict(values)


@pytest.fixture
def make_config(tiny_root: Path, tmp_path: Path) -> Any:
    """``make_config(name, **sections)``: a tiny run config writing to ``tmp_path / name``."""

    def make(name: str = "run", **sections: dict[str, Any]) -> RunConfig:
        return tiny_config(tiny_root, tmp_path / name, **sections)

    return make


@pytest.fixture
def killed_after(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``killed_after(config, steps, error=KeyboardInterrupt)``: train ``config`` until its step
    ``steps + 1`` raises ``error`` (as a kill would) and check that this very error ended the
    run, then put the real training step back."""

    def run(config: RunConfig, steps: int, error: type[BaseException] = KeyboardInterrupt) -> None:
        real, calls, kill = loop.train_step, [], error()

        def crash(*args: Any, **kwargs: Any) -> torch.Tensor:
            if len(calls) == steps:
                raise kill
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "train_step", crash)
        try:
            with pytest.raises(error) as raised:
                loop.train(config)
        finally:
            monkeypatch.setattr(loop, "train_step", real)
        assert raised.value is kill  # this kill, not another error of the same type

    return run
