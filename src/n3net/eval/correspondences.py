"""Correspondence-classification benchmark: inlier precision / recall / F1 and pose mAP.

Axis legend: ``B`` batch (image pairs), ``N`` correspondences per pair.

The protocol of Yi et al. that the paper follows (§5.5):

* a learned model gives one logit per match; a match is predicted an inlier when its logit is
  > 0. Precision, recall and F1 against the labels are computed per pair, then averaged (a
  pair with no predicted inlier has precision 0, one with no true inlier recall 0);
* its pose: the weighted eight-point algorithm with weights ``ReLU(tanh(logit))``, the
  cheirality check on the top 10 % of the matches by logit (:mod:`n3net.geometry`);
  a baseline (:mod:`n3net.models.geometric`) gives its own pose and inlier set;
* rotation and translation errors in degrees (a failure counts 180° and 90°), and the pose
  mAP@5/10/20 of ``max(err_q, err_t)`` over the pairs;
* everything overall and per difficulty tier (:func:`n3net.data.correspondences.tier_of` of
  the pair's share of true matches).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from n3net.data.correspondences import TIERS, collate_pairs, tier_of
from n3net.geometry import (
    pose_errors,
    pose_map,
    recover_pose,
    top_fraction,
    weighted_eight_point,
    weights_from_logits,
)
from n3net.models.geometric import PoseEstimate

__all__ = [
    "ROW_KEYS",
    "SUMMARY_KEYS",
    "classification_scores",
    "estimate_poses",
    "evaluate_correspondences",
    "summarize",
]

ROW_KEYS = ("pair", "tier", "inlier_ratio", "precision", "recall", "f1", "err_q", "err_t")
SUMMARY_KEYS = (
    "map5", "map10", "map20", "precision", "recall", "f1", "median_err_q", "median_err_t",
    "n_pairs",
)  # fmt: skip
TOP_FRACTION = 0.1  # the matches that vote in the cheirality check (Yi et al.)


def classification_scores(
    logits: Tensor, labels: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair precision, recall and F1 of ``logit > 0`` against the labels.

    Shape:
        logits, labels, mask: (B, N) -> three (B,).

    Example:
        >>> logits = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
        >>> labels = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
        >>> [v.item() for v in classification_scores(logits, labels)]
        [0.5, 0.5, 0.5]
    """
    valid = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.bool()
    predicted = (logits > 0) & valid
    truth = labels.bool() & valid
    tp = (predicted & truth).sum(-1).double()
    precision = tp / predicted.sum(-1).clamp_min(1)
    recall = tp / truth.sum(-1).clamp_min(1)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-12), 0.0)
    return precision, recall, f1


def estimate_poses(model: nn.Module, batch: dict[str, Tensor]) -> PoseEstimate:
    """A model's logits and pose for a batch: its own estimate, else the weighted eight-point.

    Shape:
        batch["xs"]: (B, N, 4), batch["mask"]: (B, N) -> :class:`PoseEstimate` of B pairs.
    """
    xs, mask = batch["xs"], batch["mask"]
    if hasattr(model, "estimate"):
        return model.estimate(xs, mask, batch["labels"] if model.needs_labels else None)
    logits = model(xs, mask).float()
    x1, x2 = xs[..., :2], xs[..., 2:]
    weights = weights_from_logits(logits) * mask
    essential = weighted_eight_point(x1, x2, weights)
    rotation, translation, _ = recover_pose(essential, x1, x2, top_fraction(logits, mask))
    success = torch.ones(xs.shape[0], dtype=torch.bool, device=xs.device)
    return PoseEstimate(logits, rotation, translation, success)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """Average per-pair rows into ``{map5, map10, map20, precision, recall, f1, median_err_q,
    median_err_t, n_pairs}`` (NaN for no rows)."""
    errors = [max(row["err_q"], row["err_t"]) for row in rows]
    maps = pose_map(errors)
    return {
        "map5": maps[5],
        "map10": maps[10],
        "map20": maps[20],
        "precision": _mean([row["precision"] for row in rows]),
        "recall": _mean([row["recall"] for row in rows]),
        "f1": _mean([row["f1"] for row in rows]),
        "median_err_q": _median([row["err_q"] for row in rows]),
        "median_err_t": _median([row["err_t"] for row in rows]),
        "n_pairs": len(rows),
    }


def evaluate_correspondences(
    model: nn.Module,
    pairs: Sequence[dict[str, Any]],
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """Score a model on image pairs (the protocol in the module docstring).

    Args:
        model: a learned model ``(xs, mask) -> logits`` (a module, put in eval mode, or any
            callable, e.g. the training loop's forward) or a baseline with ``estimate``.
        pairs: pair dicts (:mod:`n3net.data.correspondences`); their ``name`` (when given) or
            their index names the rows.
        batch_size: pairs per forward pass (padded to the longest).
        device: where the model runs.
        progress: show a progress bar on stderr.
        description: the progress bar's label.

    Returns:
        ``{"summary": {...}, "tiers": {"easy": {...}, "medium": {...}, "hard": {...}},
        "rows": [{"pair", "tier", "inlier_ratio", "precision", "recall", "f1", "err_q",
        "err_t"}, ...]}``, errors in degrees.
    """
    from tqdm import tqdm

    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    rows: list[dict[str, Any]] = []
    starts = range(0, len(pairs), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc=description, disable=not progress, leave=False):
            chunk = pairs[start : start + batch_size]
            batch = collate_pairs(chunk, device)
            estimate = estimate_poses(model, batch)
            precision, recall, f1 = classification_scores(
                estimate.logits, batch["labels"], batch["mask"]
            )
            err_q, err_t = pose_errors(
                estimate.rotation, estimate.translation, batch["R"], batch["t"], estimate.success
            )
            for offset, pair in enumerate(chunk):
                ratio = float(pair["inlier_ratio"])
                rows.append(
                    {
                        "pair": str(pair.get("name", start + offset)),
                        "tier": tier_of(ratio),
                        "inlier_ratio": ratio,
                        "precision": float(precision[offset]),
                        "recall": float(recall[offset]),
                        "f1": float(f1[offset]),
                        "err_q": float(err_q[offset]),
                        "err_t": float(err_t[offset]),
                    }
                )
    tiers = {tier: summarize([r for r in rows if r["tier"] == tier]) for tier in TIERS}
    return {"summary": summarize(rows), "tiers": tiers, "rows": rows}
