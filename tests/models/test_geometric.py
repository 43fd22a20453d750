"""The pose baselines: registry, exact data, the oracle's ceiling, OpenCV as an optional extra."""

from __future__ import annotations

import sys

import pytest
import torch

from n3net import geometry
from n3net._checks import MissingExtraError
from n3net.data.correspondences import collate_pairs, synthetic_pairs
from n3net.data.synthetic import SyntheticConfig
from n3net.models import arch_info, load_model
from n3net.models.geometric import PoseEstimate, PredictedRansac

BASELINES = ["eight-point", "ransac", "ransac-10k", "lmeds", "oracle"]
EASY = SyntheticConfig(num_points=500, inlier_ratio=(0.3, 0.5))


def _errors(estimate: PoseEstimate, batch: dict) -> torch.Tensor:
    err_q, err_t = geometry.pose_errors(
        estimate.rotation, estimate.translation, batch["R"], batch["t"], estimate.success
    )
    return torch.maximum(err_q, err_t)


@pytest.mark.parametrize("name", BASELINES)
def test_registered_without_weights(name: str) -> None:
    info = arch_info(name)
    assert info.task == "correspondences" and not info.needs_weights
    model = load_model(name)
    assert not model.training and sum(p.numel() for p in model.parameters()) == 0


def test_oracle_reaches_map20_near_one_on_an_easy_split() -> None:
    batch = collate_pairs(synthetic_pairs(1000, 12, EASY))
    estimate = load_model("oracle").estimate(batch["xs"], batch["mask"], batch["labels"])
    assert geometry.pose_map(_errors(estimate, batch))[20] > 0.9
    assert torch.equal(estimate.logits > 0, batch["labels"].bool())
    with pytest.raises(ValueError, match="needs the labels"):
        load_model("oracle").estimate(batch["xs"], batch["mask"])


def test_eight_point_on_inliers_only_is_exact_and_fails_with_outliers() -> None:
    pairs = synthetic_pairs(1000, 6, EASY)
    batch = collate_pairs(pairs)
    model = load_model("eight-point")
    assert geometry.pose_map(_errors(model.estimate(batch["xs"], batch["mask"]), batch))[20] < 0.5
    # Only the true matches as the input (the padding is masked): the oracle's result.
    inliers = [dict(p, xs=p["xs"][p["labels"]], labels=p["labels"][p["labels"]]) for p in pairs]
    clean = collate_pairs(inliers)
    estimate = model.estimate(clean["xs"], clean["mask"])
    assert (estimate.logits > 0).eq(clean["mask"]).all()
    assert geometry.pose_map(_errors(estimate, clean))[20] > 0.9


def test_opencv_baselines() -> None:
    pytest.importorskip("cv2")
    batch = collate_pairs(synthetic_pairs(1000, 3, EASY))
    for name in ("ransac", "lmeds"):
        estimate = load_model(name).estimate(batch["xs"], batch["mask"])
        assert estimate.success.all()
        again = load_model(name).estimate(batch["xs"][1:2], batch["mask"][1:2])
        assert torch.equal(again.rotation[0], estimate.rotation[1])  # the batch does not matter
        assert geometry.pose_map(_errors(estimate, batch))[20] > 0.5
        precision = ((estimate.logits > 0) & batch["labels"].bool()).sum() / (
            estimate.logits > 0
        ).sum()
        assert precision > 0.5  # well above the share of true matches


def test_opencv_baseline_failure_on_too_few_points() -> None:
    pytest.importorskip("cv2")
    xs = torch.randn(1, 4, 4)
    estimate = load_model("ransac").estimate(xs)
    assert not estimate.success.any() and (estimate.logits < 0).all()


def test_missing_opencv_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(
        MissingExtraError, match=r"needs the 'cv2' package: pip install 'n3net\[geometry\]'"
    ):
        load_model("ransac").estimate(torch.randn(1, 10, 4))


class _Fixed(torch.nn.Module):
    """A stand-in for a learned model: the given logits, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, xs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits


def test_ransac_on_predicted_inliers() -> None:
    pytest.importorskip("cv2")
    pairs = synthetic_pairs(1000, 3, SyntheticConfig(num_points=500, inlier_ratio=(0.05, 0.1)))
    batch = collate_pairs(pairs)
    truth = batch["labels"].float() * 2 - 1
    # Predicting every match: the plain RANSAC baseline, bit for bit.
    everything = PredictedRansac(_Fixed(torch.ones_like(truth))).estimate(
        batch["xs"], batch["mask"]
    )
    plain = load_model("ransac").estimate(batch["xs"], batch["mask"])
    for got, expected in zip(everything, plain, strict=True):
        assert torch.equal(got, expected)
    # Predicting the true inliers: RANSAC keeps a subset of them and finds the pose.
    clean = PredictedRansac(_Fixed(truth)).estimate(batch["xs"], batch["mask"])
    assert clean.success.all()
    assert not ((clean.logits > 0) & (truth < 0)).any()
    assert geometry.pose_map(_errors(clean, batch))[20] > 0.9
    assert (
        geometry.pose_map(_errors(clean, batch))[20] > geometry.pose_map(_errors(plain, batch))[20]
    )
    # Fewer than 5 predicted inliers is a failure.
    few = torch.full_like(truth, -1.0)
    few[:, :4] = 1
    failed = PredictedRansac(_Fixed(few)).estimate(batch["xs"], batch["mask"])
    assert not failed.success.any() and (failed.logits < 0).all()
