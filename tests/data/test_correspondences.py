"""Pairs of correspondences: synthetic splits, .npz pairs, padding into batches, tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from n3net.data.correspondences import (
    SPLIT_SEEDS,
    collate_pairs,
    list_npz_pairs,
    load_npz_pair,
    synthetic_pair,
    synthetic_pairs,
    tier_of,
)
from n3net.data.synthetic import SyntheticConfig

SMALL = SyntheticConfig(num_points=64)


def test_splits_are_pure_functions_of_seed_and_index() -> None:
    assert SPLIT_SEEDS == {"train": 0, "val": 1, "test": 2}
    pairs = synthetic_pairs(7, 3, SMALL)
    assert np.array_equal(pairs[2]["xs"], synthetic_pair(7, 2, SMALL)["xs"])
    assert np.array_equal(synthetic_pairs(7, 2, SMALL, start=1)[0]["xs"], pairs[1]["xs"])
    assert not np.array_equal(synthetic_pair(8, 2, SMALL)["xs"], pairs[2]["xs"])
    with pytest.raises(ValueError, match="must be >= 0"):
        synthetic_pair(-1, 0)


def test_tiers() -> None:
    assert [tier_of(r) for r in (0.5, 0.3, 0.29, 0.12, 0.119, 0.05, 0.01)] == [
        "easy", "easy", "medium", "medium", "hard", "hard", "hard",
    ]  # fmt: skip


def test_collate_pads_and_masks() -> None:
    a, b = synthetic_pair(2, 0, SMALL), synthetic_pair(2, 1, SyntheticConfig(num_points=40))
    batch = collate_pairs([a, b])
    assert batch["xs"].shape == (2, 64, 4) and batch["mask"].sum(1).tolist() == [64, 40]
    assert torch.equal(batch["xs"][1, :40], torch.from_numpy(b["xs"]))
    assert batch["xs"][1, 40:].abs().sum() == 0 and batch["labels"][1, 40:].sum() == 0
    assert batch["labels"].dtype == torch.float32 and batch["mask"].dtype == torch.bool
    assert batch["R"].shape == (2, 3, 3) and batch["t"].shape == (2, 3)
    with pytest.raises(ValueError, match="at least one pair"):
        collate_pairs([])


def _write_npz(path: Path, pair: dict, focal: float = 500.0, **extra: np.ndarray) -> None:
    """Turn a synthetic pair back into pixels with intrinsics (principal point 320, 240)."""
    k = np.array([[focal, 0, 320.0], [0, focal, 240.0], [0, 0, 1]])
    x1 = pair["xs"][:, :2] * focal + [320.0, 240.0]
    x2 = pair["xs"][:, 2:] * focal + [320.0, 240.0]
    np.savez(path, x1=x1, x2=x2, K1=k, K2=k, R=pair["R"], t=3 * pair["t"], **extra)


def test_npz_pair_round_trip(tmp_path: Path) -> None:
    pair = synthetic_pair(2, 5, SMALL)
    _write_npz(tmp_path / "b.npz", pair)
    _write_npz(tmp_path / "a.npz", pair, labels=np.ones(64, bool))
    files = list_npz_pairs(tmp_path)
    assert [f.name for f in files] == ["a.npz", "b.npz"]
    loaded = load_npz_pair(files[1])
    assert np.allclose(loaded["xs"], pair["xs"], atol=1e-6)
    assert np.linalg.norm(loaded["t"]) == pytest.approx(1.0)  # t scaled to unit length
    assert loaded["name"] == "b.npz"
    # Labels recomputed from the pose agree with the generator's except right at the threshold.
    assert (loaded["labels"] == pair["labels"]).mean() > 0.95
    assert load_npz_pair(files[0])["labels"].all() and load_npz_pair(files[0])["inlier_ratio"] == 1


def test_npz_errors(tmp_path: Path) -> None:
    pair = synthetic_pair(2, 5, SMALL)
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        list_npz_pairs(tmp_path / "missing")
    with pytest.raises(ValueError, match="no .npz pair files"):
        list_npz_pairs(tmp_path)
    np.savez(tmp_path / "partial.npz", x1=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="has no 'x2' array"):
        load_npz_pair(tmp_path / "partial.npz")
    k = np.eye(3)
    np.savez(tmp_path / "shape.npz", x1=np.zeros((9, 2)), x2=np.zeros((8, 2)), K1=k, K2=k,
             R=k, t=np.ones(3))  # fmt: skip
    with pytest.raises(ValueError, match=r"x2 must have shape \(9, 2\), got \(8, 2\)"):
        load_npz_pair(tmp_path / "shape.npz")
    np.savez(tmp_path / "still.npz", x1=np.zeros((9, 2)), x2=np.zeros((9, 2)), K1=k, K2=k,
             R=k, t=np.zeros(3))  # fmt: skip
    with pytest.raises(ValueError, match=r"\|t\| = 0 is too small"):
        load_npz_pair(tmp_path / "still.npz")
    _write_npz(tmp_path / "labels.npz", pair, labels=np.ones(3, bool))
    with pytest.raises(ValueError, match="labels must have 64 entries, got 3"):
        load_npz_pair(tmp_path / "labels.npz")
