"""The synthetic two-view generator: determinism, labels, the mix of outlier kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from n3net import geometry
from n3net.data.synthetic import GEN_TYPES, SyntheticConfig, generate_pair

SMALL = SyntheticConfig(num_points=256)


def _pair(seed: int, config: SyntheticConfig = SMALL) -> dict:
    return generate_pair(np.random.default_rng([2, seed]), config)


def test_same_seed_same_pair_other_seed_other_pair() -> None:
    a, b, c = _pair(0), _pair(0), _pair(1)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["xs"], c["xs"])


def test_layout() -> None:
    pair = _pair(3)
    assert pair["xs"].shape == (256, 4) and pair["xs"].dtype == np.float32
    assert pair["labels"].shape == (256,) and pair["labels"].dtype == bool
    assert pair["gen_type"].dtype == np.int8 and set(np.unique(pair["gen_type"])) <= set(range(5))
    assert len(GEN_TYPES) == 5 and "ratio" not in pair
    rotation = pair["R"].astype(np.float64)
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
    assert np.linalg.norm(pair["t"]) == pytest.approx(1.0, abs=1e-6)
    assert 0.05 <= pair["inlier_ratio"] <= 0.5
    # Normalised coordinates of a 640 x 480 image at f >= 400 stay within +-0.8.
    assert np.abs(pair["xs"]).max() < 0.81


def test_labels_are_the_symmetric_epipolar_distance() -> None:
    pair = _pair(4)
    xs = torch.from_numpy(pair["xs"]).double()[None]
    essential = geometry.essential_from_pose(
        torch.from_numpy(pair["R"]).double()[None], torch.from_numpy(pair["t"]).double()[None]
    )
    distance = geometry.symmetric_epipolar_distance(xs[..., :2], xs[..., 2:], essential)[0]
    assert np.allclose(distance.numpy(), pair["episym"], rtol=1e-3, atol=1e-9)
    assert np.array_equal(distance.numpy() < 1e-4, pair["labels"])


def test_inliers_mostly_pass_the_threshold_and_outliers_mostly_fail() -> None:
    pairs = [_pair(seed) for seed in range(12)]
    kinds = np.concatenate([p["gen_type"] for p in pairs])
    labels = np.concatenate([p["labels"] for p in pairs])
    assert labels[kinds == 0].mean() >= 0.9  # the design's label-noise check
    assert labels[kinds == 1].mean() < 0.05  # uniform outliers are rarely on the line
    for kind in range(1, 5):
        assert (kinds == kind).any(), GEN_TYPES[kind]
        assert labels[kinds == kind].mean() < 0.4, GEN_TYPES[kind]


def test_inlier_share_follows_the_drawn_ratio() -> None:
    for seed in range(6):
        pair = _pair(seed)
        true_matches = (pair["gen_type"] == 0).mean()
        assert true_matches == pytest.approx(pair["inlier_ratio"], abs=1 / 256 + 1e-6)


def test_side_info_and_config_checks() -> None:
    pair = _pair(5, SyntheticConfig(num_points=64, side_info=True))
    assert pair["ratio"].shape == (64,) and ((pair["ratio"] >= 0) & (pair["ratio"] <= 1)).all()
    with pytest.raises(ValueError, match="num_points must be an integer >= 8, got 4"):
        SyntheticConfig(num_points=4)
    with pytest.raises(ValueError, match="inlier_ratio must satisfy"):
        SyntheticConfig(inlier_ratio=(0.5, 0.1))


def test_impossible_scene_is_a_clear_error() -> None:
    config = SyntheticConfig(num_points=16, min_covisible=10**6)
    with pytest.raises(RuntimeError, match="co-visible points"):
        generate_pair(np.random.default_rng(0), config)
