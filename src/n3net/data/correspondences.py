"""Image pairs of putative correspondences: synthetic splits, real pairs from ``.npz``, batches.

Axis legend: ``B`` batch (pairs), ``N`` correspondences per pair.

A pair is a dict of numpy arrays: ``xs`` (N, 4) float32 ``(x1, y1, x2, y2)`` in normalised
camera coordinates, ``labels`` (N,) bool, ``R`` (3, 3) and unit ``t`` (3,) with
``X2 = R X1 + t``, ``E`` (3, 3) and ``inlier_ratio`` (the share of true matches a synthetic
pair was drawn with; the labelled share for real pairs), plus what the source adds.
:func:`collate_pairs` pads pairs of different ``N`` into one batch with a mask.

Synthetic splits (see :mod:`n3net.data.synthetic`): pair ``i`` of the split with seed ``s`` is
drawn from ``numpy.random.default_rng([s, i])``; the seeds 0, 1 and 2 are the training,
validation and test splits, any other seed a fresh test set.

Real pairs (:func:`load_npz_pair`): one ``.npz`` file per pair with ``x1``, ``x2`` (N, 2)
keypoints in pixels, ``K1``, ``K2`` (3, 3) intrinsics, ``R`` (3, 3) and ``t`` (3,) with
``X2 = R X1 + t``; optional ``labels`` (N,). See docs/correspondences.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from n3net.data.synthetic import SyntheticConfig, _episym, generate_pair

__all__ = [
    "SPLIT_SEEDS",
    "TIERS",
    "collate_pairs",
    "list_npz_pairs",
    "load_npz_pair",
    "synthetic_pair",
    "synthetic_pairs",
    "tier_of",
]

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
# Difficulty tiers by the share of true matches: hard [0.05, 0.12), medium [0.12, 0.3),
# easy [0.3, 0.5] (shares outside fall into the nearest tier).
TIERS = ("easy", "medium", "hard")
_TIER_EDGES = (0.12, 0.3)
_MIN_TRANSLATION = 1e-5  # pairs with a shorter translation are refused (Yi et al.)


def tier_of(inlier_ratio: float) -> str:
    """Difficulty tier of a pair from its share of true matches.

    Example:
        >>> tier_of(0.4), tier_of(0.2), tier_of(0.06)
        ('easy', 'medium', 'hard')
    """
    if inlier_ratio >= _TIER_EDGES[1]:
        return "easy"
    return "medium" if inlier_ratio >= _TIER_EDGES[0] else "hard"


def synthetic_pair(
    split_seed: int, index: int, config: SyntheticConfig | None = None
) -> dict[str, np.ndarray]:
    """Pair ``index`` of the synthetic split ``split_seed`` (a pure function of both)."""
    if split_seed < 0 or index < 0:
        raise ValueError(f"split seed and index must be >= 0, got {split_seed}, {index}")
    return generate_pair(np.random.default_rng([split_seed, index]), config)


def synthetic_pairs(
    split_seed: int, count: int, config: SyntheticConfig | None = None, start: int = 0
) -> list[dict[str, np.ndarray]]:
    """Pairs ``start .. start + count - 1`` of the synthetic split ``split_seed``."""
    return [synthetic_pair(split_seed, i, config) for i in range(start, start + count)]


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _array(data: np.lib.npyio.NpzFile, key: str, shape: tuple[int | None, ...], path: Path):
    if key not in data:
        raise ValueError(f"{path} has no {key!r} array (needs x1, x2, K1, K2, R, t)")
    value = np.asarray(data[key], dtype=np.float64)
    if value.ndim != len(shape) or any(
        s is not None and s != v for s, v in zip(shape, value.shape, strict=False)
    ):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{path}: {key} must have shape {want}, got {value.shape}")
    return value


def load_npz_pair(path: str | os.PathLike, threshold: float = 1e-4) -> dict[str, np.ndarray]:
    """Read one real image pair from an ``.npz`` file (layout in the module docstring).

    Keypoints are normalised with their camera's intrinsics, ``K^-1 [u, v, 1]``; ``t`` is scaled
    to unit length (a pair whose ``|t| <= 1e-5`` is refused); labels are ``labels`` when the file
    has them, else the symmetric epipolar distance under the true pose below ``threshold``.

    Returns:
        A pair dict (see the module docstring) with ``name`` (the file name) and
        ``inlier_ratio`` the labelled share of inliers.
    """

    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        x1 = _array(data, "x1", (None, 2), path)
        x2 = _array(data, "x2", (len(x1), 2), path)
        k1, k2 = _array(data, "K1", (3, 3), path), _array(data, "K2", (3, 3), path)
        rotation = _array(data, "R", (3, 3), path)
        translation = _array(data, "t", (3,), path).reshape(3)
        labels = np.asarray(data["labels"]).reshape(-1).astype(bool) if "labels" in data else None
    norm = np.linalg.norm(translation)
    if not norm > _MIN_TRANSLATION:
        raise ValueError(f"{path}: |t| = {norm:.3g} is too small for an essential matrix")
    if len(x1) < 8:
        raise ValueError(f"{path}: needs at least 8 correspondences, got {len(x1)}")

    def normalise(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        homogeneous = np.concatenate([points, np.ones_like(points[:, :1])], 1)
        out = homogeneous @ np.linalg.inv(intrinsics).T
        return out[:, :2] / out[:, 2:]

    n1, n2 = normalise(x1, k1), normalise(x2, k2)
    unit_t = translation / norm
    essential = _skew(unit_t) @ rotation
    episym = _episym(n1, n2, essential)
    if labels is None:
        labels = episym < threshold
    elif len(labels) != len(x1):
        raise ValueError(f"{path}: labels must have {len(x1)} entries, got {len(labels)}")
    return {
        "xs": np.concatenate([n1, n2], 1).astype(np.float32),
        "labels": labels,
        "episym": episym.astype(np.float32),
        "R": rotation.astype(np.float32),
        "t": unit_t.astype(np.float32),
        "E": (essential / np.linalg.norm(essential)).astype(np.float32),
        "inlier_ratio": np.float32(labels.mean()),
        "name": path.name,
    }


def list_npz_pairs(folder: str | os.PathLike) -> list[Path]:
    """The ``.npz`` pair files of a folder in sorted order; never empty.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        ValueError: it holds no ``.npz`` file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: '{folder}'")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise ValueError(f"no .npz pair files in data folder '{folder}'")
    return files


def collate_pairs(
    pairs: Sequence[dict[str, np.ndarray]], device: torch.device | str = "cpu"
) -> dict[str, Tensor]:
    """Pad pairs into one batch: zero rows beyond each pair's ``N``, marked by ``mask``.

    Returns:
        ``xs`` (B, N, 4) float32, ``mask`` (B, N) bool, ``labels`` (B, N) float32 (0 on
        padding), ``R`` (B, 3, 3), ``t`` (B, 3), ``E`` (B, 3, 3), ``inlier_ratio`` (B,).

    Shape:
        -> xs: (B, N_max, 4), mask / labels: (B, N_max).

    Example:
        >>> a = {"xs": np.ones((3, 4)), "labels": np.ones(3, bool), "R": np.eye(3),
        ...      "t": np.ones(3), "E": np.eye(3), "inlier_ratio": 1.0}
        >>> b = dict(a, xs=np.ones((5, 4)), labels=np.zeros(5, bool))
        >>> batch = collate_pairs([a, b])
        >>> batch["xs"].shape, batch["mask"].sum(1).tolist()
        (torch.Size([2, 5, 4]), [3, 5])
    """
    if not pairs:
        raise ValueError("collate_pairs needs at least one pair")
    longest = max(len(p["xs"]) for p in pairs)
    xs = np.zeros((len(pairs), longest, 4), np.float32)
    mask = np.zeros((len(pairs), longest), bool)
    labels = np.zeros((len(pairs), longest), np.float32)
    for row, pair in enumerate(pairs):
        n = len(pair["xs"])
        xs[row, :n], mask[row, :n], labels[row, :n] = pair["xs"], True, pair["labels"]

    def stack(key: str) -> Tensor:
        return torch.as_tensor(np.stack([np.asarray(p[key], np.float32) for p in pairs]))

    batch = {
        "xs": torch.from_numpy(xs),
        "mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(labels),
        "R": stack("R"),
        "t": stack("t"),
        "E": stack("E"),
        "inlier_ratio": stack("inlier_ratio"),
    }
    return {key: value.to(device) for key, value in batch.items()}
