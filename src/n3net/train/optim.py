"""Optimisation pieces a task picks from: parameter groups, lr schedules, gradient clipping.

A task's :meth:`~n3net.train.tasks.Task.optimisation` returns an :class:`Optimisation`: the
optimiser, a schedule and an optional clip. The loop calls the schedule once per step with a
:class:`Progress` and sets the learning rate of every parameter group to what it returns; it calls
the clip after the backward pass.

Adding a schedule (e.g. hold the lr for a number of steps, then decay): a small frozen dataclass
here with ``__call__(self, at: Progress) -> float`` and a doctest; a task returns it from its
``optimisation``. The loop does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

__all__ = [
    "ClipGradNorm",
    "ClipGradByLr",
    "ExponentialSchedule",
    "GradientClip",
    "HoldExponentialSchedule",
    "Optimisation",
    "Progress",
    "Schedule",
    "StepFractionSchedule",
    "StepSchedule",
    "lr_at",
    "param_groups",
]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters: decay conv/linear weights and normalisation scales, nothing else.

    Biases, BN shifts and free parameters (e.g. scalars) are not decayed, as in the paper.
    """
    weighted = (
        nn.modules.conv._ConvNd,
        nn.Linear,
        nn.modules.batchnorm._BatchNorm,
        nn.GroupNorm,
        nn.LayerNorm,
    )
    decay: list[nn.Parameter] = []
    for module in model.modules():
        is_weighted = isinstance(module, weighted)
        weight = getattr(module, "weight", None)
        if is_weighted and isinstance(weight, nn.Parameter):
            decay.append(weight)
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


@dataclass(frozen=True)
class Progress:
    """Where a run stands when the lr of its next step is chosen.

    Attributes:
        step: optimisation steps done.
        fraction: spent share of the run's budget (steps or time, whichever is nearer its end).
        epoch: steps done in epochs (fractional).
    """

    step: int
    fraction: float
    epoch: float


class Schedule(Protocol):
    """The learning rate of the next step."""

    def __call__(self, at: Progress) -> float: ...


def lr_at(progress: float, lr: float, lr_final: float) -> float:
    """Exponential decay from ``lr`` (progress 0) to ``lr_final`` (progress 1).

    Example:
        >>> [f"{lr_at(p, 1e-3, 1e-6):.3g}" for p in (0.0, 0.5, 1.0)]
        ['0.001', '3.16e-05', '1e-06']
    """
    return lr * (lr_final / lr) ** min(max(progress, 0.0), 1.0)


@dataclass(frozen=True)
class ExponentialSchedule:
    """``lr · (lr_final / lr) ** fraction``: follows the budget, steps or time alike.

    Example:
        >>> schedule = ExponentialSchedule(1e-3, 1e-6)
        >>> f"{schedule(Progress(step=10, fraction=0.5, epoch=1.0)):.3g}"
        '3.16e-05'
    """

    lr: float
    lr_final: float

    def __call__(self, at: Progress) -> float:
        return lr_at(at.fraction, self.lr, self.lr_final)

    def describe(self) -> str:
        return f"lr {self.lr:g} decaying exponentially to {self.lr_final:g} over the run"


@dataclass(frozen=True)
class HoldExponentialSchedule:
    """Constant ``lr`` for the first ``hold`` of the run, then exponential decay to ``lr_final``.

    ``hold = 0`` is :class:`ExponentialSchedule`, value for value.

    Example:
        >>> schedule = HoldExponentialSchedule(1e-3, 1e-6, hold=0.5)
        >>> [f"{schedule(Progress(0, f, 0.0)):.3g}" for f in (0.0, 0.5, 0.75, 1.0)]
        ['0.001', '0.001', '3.16e-05', '1e-06']
    """

    lr: float
    lr_final: float
    hold: float

    def __call__(self, at: Progress) -> float:
        return lr_at((at.fraction - self.hold) / (1.0 - self.hold), self.lr, self.lr_final)

    def describe(self) -> str:
        """The schedule in words.

        Example:
            >>> HoldExponentialSchedule(1e-3, 1e-6, hold=0.5).describe()
            'lr 0.001 held for 50 % of the run, then decaying exponentially to 1e-06'
            >>> HoldExponentialSchedule(1e-3, 1e-3, hold=0.0).describe()
            'constant lr 0.001'
        """
        if self.lr_final == self.lr:
            return f"constant lr {self.lr:g}"
        if self.hold == 0:
            return ExponentialSchedule(self.lr, self.lr_final).describe()
        return (
            f"lr {self.lr:g} held for {100 * self.hold:g} % of the run, then decaying "
            f"exponentially to {self.lr_final:g}"
        )


@dataclass(frozen=True)
class StepSchedule:
    """``lr · gamma ** floor(epoch / every_epochs)``: step decay, e.g. x0.1 every 20 epochs.

    Example:
        >>> schedule = StepSchedule(0.1, every_epochs=20, gamma=0.1)
        >>> [f"{schedule(Progress(0, 0.0, e)):.3g}" for e in (0.0, 19.9, 20.0, 45.0)]
        ['0.1', '0.1', '0.01', '0.001']
    """

    lr: float
    every_epochs: float
    gamma: float = 0.1

    def __call__(self, at: Progress) -> float:
        return self.lr * self.gamma ** int(at.epoch // self.every_epochs)

    def describe(self) -> str:
        return f"lr {self.lr:g}, times {self.gamma:g} every {self.every_epochs:g} epochs"


@dataclass(frozen=True)
class StepFractionSchedule:
    """``lr · gamma ** floor(fraction / every)``: step decay over the run's budget.

    :class:`StepSchedule` counts epochs; this counts the spent share of the budget, so a run
    of any length (steps, minutes or epochs) gets the same shape: ``every = 0.25`` is the paper's
    super-resolution schedule, lr ÷ 10 every 20 of its 80 epochs.

    Example:
        >>> schedule = StepFractionSchedule(0.1, every=0.25)
        >>> [f"{schedule(Progress(0, f, 0.0)):.3g}" for f in (0.0, 0.24, 0.25, 0.8)]
        ['0.1', '0.1', '0.01', '0.0001']
    """

    lr: float
    every: float
    gamma: float = 0.1

    def __call__(self, at: Progress) -> float:
        return self.lr * self.gamma ** int(at.fraction // self.every)

    def describe(self) -> str:
        return f"lr {self.lr:g}, times {self.gamma:g} after every {100 * self.every:g} % of the run"


class GradientClip(Protocol):
    """Change the gradients in place after the backward pass (it may depend on the lr)."""

    def __call__(self, parameters: Sequence[nn.Parameter], lr: float) -> None: ...


@dataclass(frozen=True)
class ClipGradNorm:
    """Rescale the gradients so that their global 2-norm is at most ``max_norm``.

    Example:
        >>> weight = nn.Parameter(torch.zeros(2))
        >>> weight.grad = torch.tensor([3.0, 4.0])
        >>> ClipGradNorm(1.0)([weight], lr=0.1)
        >>> [round(v, 3) for v in weight.grad.tolist()]
        [0.6, 0.8]
    """

    max_norm: float

    def __call__(self, parameters: Sequence[nn.Parameter], lr: float) -> None:
        torch.nn.utils.clip_grad_norm_(parameters, self.max_norm)

    def describe(self) -> str:
        return f"gradient norm clipped to {self.max_norm:g}"


@dataclass(frozen=True)
class ClipGradByLr:
    """VDSR's adjustable gradient clip: a bound of ``theta / lr``, so steps stay below ``theta``.

    With ``norm`` (default) the gradients are rescaled so that their global 2-norm is at most
    ``theta / lr``: no plain SGD step is longer than ``theta``. Without it every element is
    clipped to ``[-theta / lr, theta / lr]``, the form VDSR's paper states: no weight moves by
    more than ``theta``. Either lets VDSR train at a high initial lr (0.1).

    Example:
        >>> weight = nn.Parameter(torch.zeros(2))
        >>> weight.grad = torch.tensor([3.0, -0.05])
        >>> ClipGradByLr(0.01, norm=False)([weight], lr=0.1)
        >>> [round(v, 3) for v in weight.grad.tolist()]
        [0.1, -0.05]
        >>> weight.grad = torch.tensor([3.0, 4.0])
        >>> ClipGradByLr(0.1)([weight], lr=0.1)
        >>> [round(v, 3) for v in weight.grad.tolist()]
        [0.6, 0.8]
    """

    theta: float
    norm: bool = True

    def __call__(self, parameters: Sequence[nn.Parameter], lr: float) -> None:
        bound = self.theta / max(lr, 1e-12)
        if self.norm:
            torch.nn.utils.clip_grad_norm_(parameters, bound)
        else:
            torch.nn.utils.clip_grad_value_(parameters, bound)

    def describe(self) -> str:
        what = "norm" if self.norm else "elements"
        return f"gradient {what} clipped to {self.theta:g} / lr"


@dataclass
class Optimisation:
    """What a task trains with: the optimiser, its lr schedule and an optional gradient clip."""

    optimizer: torch.optim.Optimizer
    schedule: Schedule
    clip: GradientClip | None = None

    def describe(self) -> str:
        """The optimiser, its decay, the schedule and the clip in words (for model metadata).

        Parts without a ``describe()`` (a task's own schedule or clip) are named by their repr.

        Example:
            >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
            >>> adam = torch.optim.Adam(param_groups(model, 1e-4), lr=1e-3)
            >>> Optimisation(adam, HoldExponentialSchedule(1e-3, 1e-6, 0.5)).describe()
            'Adam (betas 0.9, 0.999), L2 weight decay 0.0001 on weights and norm scales, lr 0.001 \
held for 50 % of the run, then decaying exponentially to 1e-06'
        """
        optimizer = self.optimizer
        defaults = optimizer.defaults
        name = type(optimizer).__name__
        if "betas" in defaults:
            name += " (betas {:g}, {:g})".format(*defaults["betas"])
        elif defaults.get("momentum"):
            name += f" (momentum {defaults['momentum']:g})"
        decays = [group.get("weight_decay", 0.0) for group in optimizer.param_groups]
        nonzero = sorted(set(decays) - {0.0})
        if not nonzero:
            decay = "no weight decay"
        elif len(nonzero) > 1:
            decay = "L2 weight decay " + " / ".join(f"{d:g}" for d in nonzero)
        elif 0.0 in decays:  # param_groups: weights and norm scales decay, the rest does not
            decay = f"L2 weight decay {nonzero[0]:g} on weights and norm scales"
        else:
            decay = f"L2 weight decay {nonzero[0]:g} on all parameters"
        parts = [name, decay, _describe(self.schedule)]
        if self.clip is not None:
            parts.append(_describe(self.clip))
        return ", ".join(parts)


def _describe(part: object) -> str:
    describe = getattr(part, "describe", None)
    return describe() if callable(describe) else repr(part)
