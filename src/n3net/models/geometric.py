"""Classic relative-pose baselines of correspondence classification, as models of the registry.

Axis legend: ``B`` batch (image pairs), ``N`` correspondences per pair.

None of them learns; each is built from its name (``load_model("ransac")``):

* ``eight-point``: the eight-point algorithm on all matches (every weight 1), cheirality on all;
* ``ransac`` / ``ransac-10k``: OpenCV's five-point RANSAC on all matches (threshold 0.001 in
  normalised coordinates, confidence 0.999, at most 1,000 / 10,000 iterations), then
  ``recoverPose`` on its inliers, as Yi et al.'s comparison ran it;
* ``lmeds``: the same with least median of squares;
* ``oracle``: the weighted eight-point algorithm on the true inliers (the ceiling of the
  learned models' pose pipeline); it is given the labels.

:class:`PredictedRansac` wraps a learned model into Yi et al.'s "ours + RANSAC" pipeline: the
same OpenCV RANSAC, run on the matches the model predicts as inliers (logit > 0) only.

Their :meth:`estimate` returns a :class:`PoseEstimate`: one logit per match (positive for the
matches the method keeps) and the pose. The OpenCV ones need the ``geometry`` extra
(``opencv-python-headless``) and run one pair at a time on the CPU, each pair with OpenCV's
generator reseeded, so results do not depend on the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from n3net.geometry import recover_pose, weighted_eight_point
from n3net.models._registry import register_model
from n3net.models.cnnet import _check_input

__all__ = ["EightPoint", "OpenCVEstimator", "Oracle", "PoseEstimate", "PredictedRansac"]

_THRESHOLD = 1e-3  # RANSAC threshold in normalised coordinates (Yi et al.)
_CONFIDENCE = 0.999


class PoseEstimate(NamedTuple):
    """What a pose estimator returns for a batch of pairs.

    Attributes:
        logits: (B, N), > 0 for the matches taken as inliers.
        rotation: (B, 3, 3), translation: (B, 3) unit, ``X2 = R X1 + t``.
        success: (B,) bool; a failed pair scores the worst errors.
    """

    logits: Tensor
    rotation: Tensor
    translation: Tensor
    success: Tensor


def _valid(xs: Tensor, mask: Tensor | None) -> Tensor:
    _check_input(xs, mask, 4)
    return torch.ones(xs.shape[:2], dtype=torch.bool, device=xs.device) if mask is None else mask


class _Baseline(nn.Module):
    """Shared shape of the baselines: no parameters; ``forward`` gives the logits."""

    needs_labels = False

    def estimate(
        self, xs: Tensor, mask: Tensor | None = None, labels: Tensor | None = None
    ) -> PoseEstimate:
        raise NotImplementedError

    def forward(
        self, xs: Tensor, mask: Tensor | None = None, labels: Tensor | None = None
    ) -> Tensor:
        _check_input(xs, mask, 4)
        return self.estimate(xs, mask, labels).logits


def _weighted_pose(xs: Tensor, weights: Tensor, voters: Tensor) -> tuple[Tensor, Tensor]:
    x1, x2 = xs[..., :2], xs[..., 2:]
    essential = weighted_eight_point(x1, x2, weights)
    rotation, translation, _ = recover_pose(essential, x1, x2, voters)
    return rotation, translation


class EightPoint(_Baseline):
    """The plain eight-point algorithm on all matches (every weight 1; all vote on cheirality).

    Shape:
        xs: (B, N, 4), mask: (B, N) -> :class:`PoseEstimate`.
    """

    def estimate(
        self, xs: Tensor, mask: Tensor | None = None, labels: Tensor | None = None
    ) -> PoseEstimate:
        valid = _valid(xs, mask)
        rotation, translation = _weighted_pose(xs, valid.to(xs.dtype), valid)
        logits = valid.to(xs.dtype) * 2 - 1  # every real match is kept
        success = valid.sum(-1) >= 8
        return PoseEstimate(logits, rotation, translation, success)


class Oracle(_Baseline):
    """The weighted eight-point algorithm on the true inliers (they also vote on cheirality).

    Shape:
        xs: (B, N, 4), mask: (B, N), labels: (B, N) -> :class:`PoseEstimate`.
    """

    needs_labels = True

    def estimate(
        self, xs: Tensor, mask: Tensor | None = None, labels: Tensor | None = None
    ) -> PoseEstimate:
        if labels is None:
            raise ValueError("the oracle needs the labels")
        inliers = labels.bool() & _valid(xs, mask)
        rotation, translation = _weighted_pose(xs, inliers.to(xs.dtype), inliers)
        logits = inliers.to(xs.dtype) * 2 - 1
        return PoseEstimate(logits, rotation, translation, inliers.sum(-1) >= 8)


class OpenCVEstimator(_Baseline):
    """OpenCV's robust essential-matrix estimation on all matches, then ``recoverPose``.

    Of several essential matrices OpenCV may return, the one with the most matches passing
    the cheirality check is kept. Fewer than 5 matches or no estimate is a failure.

    Args:
        method: ``"ransac"`` or ``"lmeds"``.
        max_iterations: RANSAC's iteration cap (OpenCV stops earlier once confident).
        threshold: inlier threshold in normalised coordinates.
        confidence: the desired probability of a correct estimate.
        seed: OpenCV's generator seed, set before each pair.

    Shape:
        xs: (B, N, 4), mask: (B, N) -> :class:`PoseEstimate`.
    """

    def __init__(
        self,
        method: str = "ransac",
        max_iterations: int = 1000,
        threshold: float = _THRESHOLD,
        confidence: float = _CONFIDENCE,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if method not in ("ransac", "lmeds"):
            raise ValueError(f"method must be 'ransac' or 'lmeds', got {method!r}")
        self.method, self.max_iterations = method, max_iterations
        self.threshold, self.confidence, self.seed = threshold, confidence, seed

    def _one(self, cv2, p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """(inlier mask, R, t) of one pair, or None on failure."""
        if len(p1) < 5:
            return None
        cv2.setRNGSeed(self.seed)
        method = cv2.RANSAC if self.method == "ransac" else cv2.LMEDS
        essential, inliers = cv2.findEssentialMat(
            p1, p2, np.eye(3), method=method, prob=self.confidence,
            threshold=self.threshold, maxIters=self.max_iterations,
        )  # fmt: skip
        if essential is None or inliers is None or essential.shape[0] < 3:
            return None
        best = None
        for index in range(essential.shape[0] // 3):
            candidate = essential[3 * index : 3 * index + 3]
            votes, rotation, translation, kept = cv2.recoverPose(
                candidate, p1, p2, np.eye(3), mask=inliers.copy()
            )
            if best is None or votes > best[0]:
                best = (votes, inliers.reshape(-1) > 0, rotation, translation.reshape(3))
        return best[1:]

    def estimate(
        self, xs: Tensor, mask: Tensor | None = None, labels: Tensor | None = None
    ) -> PoseEstimate:
        from n3net._checks import require_extra

        cv2 = require_extra("cv2", f"the {self.method} baseline", extra="geometry")
        valid = _valid(xs, mask).cpu()
        points = xs.detach().to("cpu", torch.float64).numpy()
        b, n = xs.shape[:2]
        logits = -torch.ones(b, n, dtype=xs.dtype)
        rotation = torch.eye(3, dtype=xs.dtype).repeat(b, 1, 1)
        translation = torch.zeros(b, 3, dtype=xs.dtype)
        success = torch.zeros(b, dtype=torch.bool)
        for row in range(b):
            real = valid[row].numpy()
            found = self._one(cv2, points[row, real, :2].copy(), points[row, real, 2:].copy())
            if found is None:
                continue
            inliers, r, t = found
            kept = torch.zeros(n, dtype=torch.bool)
            kept[torch.from_numpy(np.flatnonzero(real)[inliers])] = True
            logits[row] = kept.to(xs.dtype) * 2 - 1
            rotation[row], translation[row] = torch.from_numpy(r), torch.from_numpy(t)
            success[row] = True
        device = xs.device
        return PoseEstimate(
            logits.to(device), rotation.to(device), translation.to(device), success.to(device)
        )

    def extra_repr(self) -> str:
        return f"method={self.method!r}, max_iterations={self.max_iterations}"


class PredictedRansac(_Baseline):
    """A learned model's predicted inliers (logit > 0), then OpenCV RANSAC on them alone.

    Yi et al.'s "ours + RANSAC": the matches the model rejects never reach RANSAC. The logits
    returned are RANSAC's verdict (> 0 for the predicted inliers RANSAC keeps), so precision,
    recall and F1 score the matches the whole pipeline keeps; the model's own classification
    is that of the plain model. Fewer than 5 predicted inliers, or no estimate, is a failure.

    Args:
        model: a learned model ``(xs, mask) -> logits`` of shape (B, N).
        estimator: the robust estimator; None for ``ransac`` (at most 1,000 iterations, as the
            original).

    Shape:
        xs: (B, N, 4), mask: (B, N) -> :class:`PoseEstimate`.
    """

    def __init__(self, model: nn.Module, estimator: OpenCVEstimator | None = None) -> None:
        super().__init__()
        self.model = model
        self.estimator = estimator if estimator is not None else OpenCVEstimator("ransac", 1000)

    def estimate(
        self, xs: Tensor, mask: Tensor | None = None, labels: Tensor | None = None
    ) -> PoseEstimate:
        valid = _valid(xs, mask)
        logits = self.model(xs, mask)
        predicted = (logits > 0) & valid
        return self.estimator.estimate(xs, predicted)


@register_model("eight-point", task="correspondences", needs_weights=False)
def eight_point(**config: object) -> EightPoint:
    """The eight-point algorithm on all matches."""
    return EightPoint()


@register_model("ransac", task="correspondences", needs_weights=False)
def ransac(**config: object) -> OpenCVEstimator:
    """OpenCV five-point RANSAC, at most 1,000 iterations."""
    return OpenCVEstimator("ransac", 1000, **config)  # type: ignore[arg-type]


@register_model("ransac-10k", task="correspondences", needs_weights=False)
def ransac_10k(**config: object) -> OpenCVEstimator:
    """OpenCV five-point RANSAC, at most 10,000 iterations."""
    return OpenCVEstimator("ransac", 10000, **config)  # type: ignore[arg-type]


@register_model("lmeds", task="correspondences", needs_weights=False)
def lmeds(**config: object) -> OpenCVEstimator:
    """OpenCV least median of squares."""
    return OpenCVEstimator("lmeds", 1000, **config)  # type: ignore[arg-type]


@register_model("oracle", task="correspondences", needs_weights=False)
def oracle(**config: object) -> Oracle:
    """The weighted eight-point algorithm on the true inliers."""
    return Oracle()
