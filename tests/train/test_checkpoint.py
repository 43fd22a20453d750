"""Checkpoints: atomic writes, RNG states, weights_only loading."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from n3net.train import checkpoint
from n3net.train.checkpoint import (
    CHECKPOINT_VERSION,
    atomic_save,
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
)


def test_atomic_save_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "last.pt"
    state = {"version": CHECKPOINT_VERSION, "step": 3, "w": torch.arange(4.0), "none": None}
    atomic_save(state, path)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"]) and loaded["none"] is None
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_save_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    atomic_save({"version": CHECKPOINT_VERSION, "step": 1}, path)

    def broken_save(state: object, file: object) -> None:
        file.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"version": CHECKPOINT_VERSION, "step": 2}, path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["step"] == 1


def test_rng_states_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    states = capture_rng_states()
    atomic_save({"version": CHECKPOINT_VERSION, "rng": states}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.normal(size=3), random.random(), random.gauss(0, 1))
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    restore_rng_states(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (torch.rand(3), np.random.normal(size=3), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_load_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"step": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not an n3net training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with open(tmp_path / "evil.pt", "wb") as file:
        pickle.dump({"version": CHECKPOINT_VERSION, "x": object()}, file, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(tmp_path / "evil.pt")
