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


@dataclass
class Budget:
    """How long a run lasts: steps, minutes or epochs; ``progress`` is the spent fraction."""

    total_steps: int | None
    budget_s: float | None
    epoch_steps: float

    @classmethod
    def of(cls, config: RunConfig, epoch_size: int) -> Budget:
        train = config.train
        epoch_steps = epoch_size / train.batch_size
        total = train.max_steps
        if total is None and train.max_minutes is None:
            total = math.ceil(train.epochs * epoch_steps)
        budget_s = None if train.max_minutes is None else train.max_minutes * 60
        return cls(total, budget_s, epoch_steps)

    def progress(self, step: int, elapsed: float) -> float:
        parts = [0.0]
        if self.total_steps is not None:
            parts.append(step / self.total_steps)
        if self.budget_s is not None:
            parts.append(elapsed / self.budget_s)
        return max(parts)


class RunState:
    """Step, clock and best result of one run, and its checkpoint; the loop drives it."""

    def __init__(self, config: RunConfig, info: dist_utils.DistInfo, device: torch.device) -> None:
        self.config, self.info, self.device = config, info, device
        self.out_dir = Path(config.train.out_dir)
        self.step, self.elapsed = 0, 0.0
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
