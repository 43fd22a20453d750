"""The state of a training run: its budget, step, clock and best result, and its checkpoint.

:class:`RunState` writes and restores ``last.pt`` (see :mod:`n3net.train.checkpoint` for what
an exact resume needs); :class:`Budget` turns the config's steps, minutes or epochs into the
spent fraction of the run that the lr schedules follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from n3net.train import distributed as dist_utils
from n3net.train.checkpoint import (
    CHECKPOINT_VERSION,
    atomic_save,
    capture_rng_states,
    restore_rng_states,
)
from n3net.train.config import RunConfig
from n3net.train.tasks import Task

__all__ = ["Budget", "RunState"]


# A time budget becomes a step budget once the step time is measured: over the training steps
# from _CALIBRATE_FROM to _CALIBRATE_AT (the first ones warm caches and allocators up).
_CALIBRATE_FROM, _CALIBRATE_AT = 10, 30


@dataclass
class Budget:
    """How long a run lasts: steps, minutes or epochs; ``progress`` is the spent fraction.

    A time budget (``train.max_minutes``) counts training steps only, never validation or
    checkpoints. Until step 30 the run follows the training seconds spent; at step 30 the time of
    steps 10-30 turns the remaining minutes into a number of steps, and from then on the run and
    its lr schedule follow steps, so the schedule does not depend on how long validation takes.

    Example:
        >>> budget = Budget(total_steps=None, budget_s=60.0, epoch_steps=100.0)
        >>> budget.progress(step=5, train_s=6.0)
        0.1
        >>> budget.observe(step=10, train_s=10.0); budget.observe(step=30, train_s=20.0)
        >>> budget.time_steps, budget.progress(step=40, train_s=25.0)
        (110, 0.36363636363636365)
    """

    total_steps: int | None
    budget_s: float | None
    epoch_steps: float
    time_steps: int | None = None  # the step budget a time budget became
    mark_s: float | None = None  # training seconds at step _CALIBRATE_FROM

    @classmethod
    def of(cls, config: RunConfig, epoch_size: int) -> Budget:
        train = config.train
        epoch_steps = epoch_size / train.batch_size
        total = train.max_steps
        if total is None and train.max_minutes is None:
            total = math.ceil(train.epochs * epoch_steps)
        budget_s = None if train.max_minutes is None else train.max_minutes * 60
        return cls(total, budget_s, epoch_steps)

    def observe(self, step: int, train_s: float) -> None:
        """Measure the step time (call after every step, with the same values on every rank)."""
        if self.budget_s is None or self.time_steps is not None:
            return
        if step == _CALIBRATE_FROM:
            self.mark_s = train_s
        elif step == _CALIBRATE_AT and self.mark_s is not None:
            per_step = max(train_s - self.mark_s, 1e-9) / (_CALIBRATE_AT - _CALIBRATE_FROM)
            left = max(self.budget_s - train_s, 0.0)
            self.time_steps = step + math.ceil(left / per_step)

    def progress(self, step: int, train_s: float) -> float:
        parts = [0.0]
        if self.total_steps is not None:
            parts.append(step / self.total_steps)
        if self.time_steps is not None:
            parts.append(step / self.time_steps)
        elif self.budget_s is not None:
            parts.append(train_s / self.budget_s)
        return max(parts)

    def state(self) -> dict[str, Any]:
        return {"time_steps": self.time_steps, "mark_s": self.mark_s}

    def load(self, state: dict[str, Any] | None) -> None:
        if state:
            self.time_steps, self.mark_s = state["time_steps"], state["mark_s"]


class RunState:
    """Step, clock and best result of one run, and its checkpoint; the loop drives it."""

    def __init__(self, config: RunConfig, info: dist_utils.DistInfo, device: torch.device) -> None:
        self.config, self.info, self.device = config, info, device
        self.out_dir = Path(config.train.out_dir)
        self.step, self.elapsed = 0, 0.0
        self.train_s = 0.0  # seconds spent in training steps (no validation, no checkpoints)
        self.budget_state: dict[str, Any] | None = None
        self.skipped = 0  # steps skipped for a non-finite loss or gradient
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.last_val: float | None = None

    def checkpoint(self, task: Task, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        state = {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "train_s": self.train_s,
            "budget": self.budget_state,
            "skipped": self.skipped,
            "config": self.config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best": {
                "metric": task.metric,
                "value": self.best,
                "step": self.best_step,
                "model": self.best_state,
            },
            "last_val": self.last_val,
            "data": {"seed": self.config.train.seed, "next_batch": self.step},
            "rng": capture_rng_states(),
            "world_size": self.info.world_size,
        }
        atomic_save(state, self.out_dir / "last.pt")

    def restore(self, state: dict[str, Any], model: nn.Module, optimizer: Any) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.train_s = float(state.get("train_s", self.elapsed))
        self.budget_state = state.get("budget")
        self.skipped = int(state.get("skipped", 0))
        best = state["best"]
        self.best, self.best_step, self.best_state = best["value"], best["step"], best["model"]
        self.last_val = state.get("last_val")
        restore_rng_states(state["rng"])

    def record_validation(self, task: Task, value: float, model: nn.Module) -> None:
        self.last_val = value
        better = self.best is None or (value > self.best if task.maximize else value < self.best)
        if better:
            self.best, self.best_step = value, self.step
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
