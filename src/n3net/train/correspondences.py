"""The ``correspondences`` task: inlier classification of putative matches (paper §5.5).

Axis legend: ``B`` batch (image pairs), ``N`` correspondences per pair.

Data: the synthetic two-view benchmark (:mod:`n3net.data.synthetic`), generated on the fly.
The training split is pairs ``0 .. task.train_pairs - 1`` of split seed 0; batch ``b`` of rank
``r`` draws its pairs from a generator seeded by ``(train.seed, b, r)``, so it is a pure function
of them (a resumed run sees the same batches); generated pairs are kept in memory. Validation:
the first ``task.val_pairs`` pairs of split seed 1. A batch is a dict of padded tensors
(:func:`n3net.data.correspondences.collate_pairs`): ``xs``, ``mask``, ``labels``, ``R``, ``t``,
``E``.

Loss (Yi et al., as the paper trains): class-balanced binary cross-entropy per pair,
``mean_b[0.5 mean_pos(-log s(l)) + 0.5 mean_neg(-log s(-l))]``, plus, from step
``task.essential_after_steps`` on, ``task.essential_weight`` times the essential-matrix loss of
the weighted eight-point estimate (:func:`n3net.geometry.essential_loss`). Optimisation: Adam at
a constant ``train.lr`` (1e-3), no weight decay, batch 32. Validation metric: the pose mAP@20
of the weighted eight-point path (``val_map``), as the original picks its best model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n3net.data.correspondences import SPLIT_SEEDS, collate_pairs, synthetic_pair
from n3net.data.synthetic import SyntheticConfig
from n3net.geometry import essential_loss, weighted_eight_point, weights_from_logits
from n3net.train.data import mix_seed
from n3net.train.optim import HoldExponentialSchedule, Optimisation
from n3net.train.tasks import Forward, Task, TaskConfig, register_task

__all__ = ["CorrespondencesConfig", "CorrespondencesTask", "class_balanced_bce"]

_BATCH_STREAM = 11  # mix_seed tag of the training batches' pair draws
_KEPT = ("xs", "labels", "R", "t", "E", "inlier_ratio")  # what the training cache holds


@dataclass
class CorrespondencesConfig(TaskConfig):
    """The ``[task]`` table of ``correspondences``.

    Attributes:
        points: matches per synthetic pair (2000 as the real data; 512 for a CPU smoke run).
        train_pairs: size of the synthetic training split (10000, as Yi et al.'s).
        val_pairs: validation pairs (split seed 1); 0 disables validation.
        essential_after_steps: the step from which the essential-matrix loss is added
            (20000 in the original's 500k-step schedule).
        essential_weight: its weight (0.1 in Yi et al. and the paper's code).
    """

    name: str = field(default="correspondences", metadata={"flag": "task"})
    points: int = 2000
    train_pairs: int = 10000
    val_pairs: int = 500
    essential_after_steps: int = 20000
    essential_weight: float = 0.1

    def validate(self) -> None:
        if self.points < 8:
            raise ValueError(f"task.points must be >= 8, got {self.points}")
        if self.train_pairs < 1:
            raise ValueError(f"task.train_pairs must be >= 1, got {self.train_pairs}")
        for name in ("val_pairs", "essential_after_steps", "essential_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"task.{name} must be >= 0, got {getattr(self, name)}")


def class_balanced_bce(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Yi et al.'s classification loss: positives and negatives weigh half each, per pair.

    ``mean_b[0.5 sum_pos softplus(-l) / max(n_pos, 1) + 0.5 sum_neg softplus(l) / max(n_neg, 1)]``
    (``softplus(-l) = -log sigmoid(l)``); padding counts as neither.

    Shape:
        logits, labels, mask: (B, N) -> scalar.

    Example:
        >>> round(class_balanced_bce(torch.zeros(1, 4), torch.tensor([[1.0, 0, 0, 0]])).item(), 4)
        0.6931
    """
    valid = torch.ones_like(labels) if mask is None else mask.to(labels.dtype)
    positive, negative = labels * valid, (1 - labels) * valid
    pos = (F.softplus(-logits) * positive).sum(-1) / positive.sum(-1).clamp_min(1)
    neg = (F.softplus(logits) * negative).sum(-1) / negative.sum(-1).clamp_min(1)
    return (0.5 * pos + 0.5 * neg).mean()


class _PairBatches:
    """Training batches: batch ``b`` of rank ``r`` is a pure function of (seed, b, r)."""

    def __init__(self, task: CorrespondencesTask, size: int, start: int, rank: int,
                 device: torch.device) -> None:  # fmt: skip
        self.task, self.size, self.rank, self.device = task, size, rank, device
        self.batch = start

    def __next__(self) -> dict[str, Tensor]:
        seed = mix_seed(self.task.config.train.seed, _BATCH_STREAM, self.batch, self.rank)
        self.batch += 1
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, self.task.options.train_pairs, self.size)
        return collate_pairs([self.task.training_pair(int(i)) for i in picks], self.device)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return self

    def close(self) -> None:
        pass


@register_task("correspondences")
class CorrespondencesTask(Task):
    """Inlier classification on the synthetic two-view benchmark (see the module docstring)."""

    Config = CorrespondencesConfig
    metric = "val_map"
    columns = ("val_map", "val_map5", "val_map10", "val_f1")
    defaults = {
        "model": {"arch": "cnnet"},
        "train": {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 32},
    }

    options: CorrespondencesConfig

    def load(self, with_validation: bool, with_training: bool = True) -> None:
        # training pairs are generated when first drawn: nothing to skip without them
        self.synthetic = SyntheticConfig(num_points=self.options.points)
        self._cache: dict[int, dict[str, Any]] = {}
        self.val_pairs: list[dict[str, Any]] = []
        if with_validation:
            seed = SPLIT_SEEDS["val"]
            self.val_pairs = [
                synthetic_pair(seed, i, self.synthetic) for i in range(self.options.val_pairs)
            ]

    def training_pair(self, index: int) -> dict[str, Any]:
        """Pair ``index`` of the training split, generated once and then kept."""
        if index not in self._cache:
            pair = synthetic_pair(SPLIT_SEEDS["train"], index, self.synthetic)
            self._cache[index] = {key: pair[key] for key in _KEPT}
        return self._cache[index]

    @property
    def epoch_size(self) -> int:
        return self.options.train_pairs

    @property
    def has_validation(self) -> bool:
        return self.options.val_pairs > 0

    def batches(self, start: int, rank: int, world_size: int, device: torch.device) -> _PairBatches:
        size = self.config.train.batch_size // world_size
        return _PairBatches(self, size, start, rank, device)

    def loss(self, forward: Forward, batch: dict[str, Tensor], step: int) -> Tensor:
        xs, mask = batch["xs"], batch["mask"]
        logits = forward(xs, mask).float()
        loss = class_balanced_bce(logits, batch["labels"], mask)
        weight = self.options.essential_weight
        if step >= self.options.essential_after_steps and weight > 0:
            weights = weights_from_logits(logits) * mask
            estimate = weighted_eight_point(xs[..., :2], xs[..., 2:], weights)
            loss = loss + weight * essential_loss(estimate, batch["E"])
        return loss

    def optimisation(self, model: nn.Module) -> Optimisation:
        """Adam at a constant ``train.lr`` (Yi et al.), L2 decay ``train.weight_decay`` (0)."""
        train = self.config.train
        optimizer = torch.optim.Adam(
            model.parameters(),
            lr=train.lr,
            betas=(train.betas[0], train.betas[1]),
            weight_decay=train.weight_decay,
        )
        return Optimisation(optimizer, HoldExponentialSchedule(train.lr, train.lr, 0.0))

    def validate(self, forward: Forward, device: torch.device) -> dict[str, float]:
        from n3net.eval.correspondences import evaluate_correspondences

        summary = evaluate_correspondences(forward, self.val_pairs, device=device)["summary"]
        return {
            "val_map": summary["map20"],
            "val_map5": summary["map5"],
            "val_map10": summary["map10"],
            "val_f1": summary["f1"],
        }

    def report(self, values: dict[str, float]) -> str:
        return (
            f"validation mAP@20 {values['val_map']:.4f} (mAP@5 {values['val_map5']:.4f}, "
            f"mAP@10 {values['val_map10']:.4f}), F1 {values['val_f1']:.4f}"
        )

    def describe(self) -> str:
        o = self.options
        return (
            f"synthetic pairs of {o.points} matches ({o.train_pairs} training, {o.val_pairs} "
            f"validation), batch {self.config.train.batch_size}, essential loss x"
            f"{o.essential_weight:g} from step {o.essential_after_steps}"
        )

    def metadata(self) -> dict[str, str]:
        o, train = self.options, self.config.train
        essential = (
            f", + {o.essential_weight:g} x the essential-matrix loss from step "
            f"{o.essential_after_steps}"
            if o.essential_weight > 0
            else ""
        )
        return {
            "data": "synthetic",
            "points": str(o.points),
            "train_data": f"synthetic two-view pairs 0-{o.train_pairs - 1} of split seed "
            f"{SPLIT_SEEDS['train']} ({o.points} matches each); validation: the first "
            f"{o.val_pairs} pairs of split seed {SPLIT_SEEDS['val']}",
            "protocol": f"batch {train.batch_size} pairs, class-balanced BCE{essential}, "
            f"amp {train.amp}",
            "optimizer": f"Adam ({train.betas[0]:g}, {train.betas[1]:g}) at a constant lr "
            f"{train.lr:g}, weight decay {train.weight_decay:g}",
        }

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "points": self.options.points}
