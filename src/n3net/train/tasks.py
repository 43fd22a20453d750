"""Tasks: what a training run learns; the loop (:mod:`n3net.train.loop`) knows none of it.

A task owns how training batches and validation inputs are made (with a degradation from
:mod:`n3net.degradations`), the loss, the validation metric and its log columns, the default
optimiser, lr schedule and gradient clip, the ``[task]`` table of the config (its own options,
e.g. ``sigma``) and the metadata written into the weights. ``n3net train --task NAME`` picks one;
``denoise`` (:mod:`n3net.train.denoise`) is the default.

Adding a task, e.g. ``sr`` (super-resolution), ``correspondences`` or ``realnoise``:

1. a degradation in ``n3net/degradations/`` if it needs one (``bicubic.py``,
   ``heteroscedastic.py``);
2. a module ``n3net/train/<task>.py`` with a :class:`TaskConfig` subclass (the ``[task]`` table:
   ``scales``, ``essential_after_steps``, ...; each field becomes a TOML key and a flag, its
   docstring entry the help) and a :class:`Task` subclass decorated with ``@register_task``.
   Image tasks subclass :class:`n3net.train.image_task.ImageTask` and write only the training
   pair, the score of one validation image, the loss and, where they differ, the optimisation
   and metadata. Others implement :class:`Task` directly (their own data and batches: sets with
   masks, a dict of tensors, anything the task's ``loss`` understands);
3. the module's name in :data:`BUILTIN_TASKS` below, so that ``--task`` finds it;
4. tests under ``tests/train/``.

The loop, the logs, the checkpoints and the config stay as they are. In outline:

- ``sr``: an ImageTask; ``[task] scales = [2, 3, 4]``; ``training_pair`` downscales each batch
  bicubically by a scale drawn from the batch's generator; ``score`` is the Y-channel PSNR with
  a border shave; ``columns`` (set per instance) holds one column per scale and ``validate``
  fills them; ``optimisation`` returns SGD, a :class:`~n3net.train.optim.StepSchedule` and a
  clip (a :class:`~n3net.train.optim.GradientClip` gets the lr, for VDSR's lr-scaled clip).
- ``correspondences``: a Task with its own data; batches are dicts of padded point sets,
  their masks and labels; ``loss`` adds the essential-matrix term once ``step`` passes
  ``[task] essential_after_steps``; ``validate`` returns the pose mAP (``val_map``).
- ``realnoise``: an ImageTask whose ``training_pair`` returns ``(noisy, noise_maps, clean)``
  and whose ``loss`` calls ``forward(noisy, noise_maps)``.

This module imports no torch, so that importing the config is cheap; the task modules are
imported on the first look-up of a name (the CLI's ``train`` parser does it when it is used).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from n3net.train.config import RunConfig
    from n3net.train.optim import Optimisation

__all__ = [
    "BUILTIN_TASKS",
    "DEFAULT_TASK",
    "BatchSource",
    "Forward",
    "Task",
    "TaskConfig",
    "list_tasks",
    "register_task",
    "task_class",
]

DEFAULT_TASK = "denoise"
# Modules that register the built-in tasks; imported on first look-up.
BUILTIN_TASKS = ("n3net.train.denoise", "n3net.train.correspondences", "n3net.train.sr")

_REGISTRY: dict[str, type[Task]] = {}
_T = TypeVar("_T", bound="type[Task]")

Forward = Callable[..., "Tensor"]  # the model as the loop runs it (autocast, memory format)


@dataclass
class TaskConfig:
    """The ``[task]`` table of a run's config; each task subclasses it with its own options.

    Attributes:
        name: the task: what the run learns (``denoise``; see ``n3net.train.tasks``).
    """

    name: str = field(default=DEFAULT_TASK, metadata={"flag": "task"})

    def validate(self) -> None:
        """Check the task's own values; raise a one-line ValueError (subclasses extend this)."""


class BatchSource(Protocol):
    """An endless iterator of training batches that can be closed (stops worker processes)."""

    def __next__(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Task(ABC):
    """What a run learns. The loop calls, in order: :meth:`load`, :meth:`optimisation`,
    :meth:`batches`, then per step :meth:`loss`, and :meth:`validate` now and then.

    Class attributes:
        name: the registered name (set by :func:`register_task`).
        Config: the ``[task]`` table's dataclass.
        metric: the validation log column that picks the best weights.
        maximize: whether a larger ``metric`` is better.
        columns: the validation columns of ``log.csv`` (``metric`` among them).
        presets: named sets of config values (``--preset``), ``{name: {section: {key: value}}}``.
        defaults: config values of this task that replace the dataclass defaults (below a
            preset, a config file and flags), ``{section: {key: value}}``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    metric: ClassVar[str] = "val_metric"
    maximize: ClassVar[bool] = True
    columns: ClassVar[tuple[str, ...]] = ("val_metric",)
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.options = config.task

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Move keys of older config layouts (files, checkpoints) to where they live now."""
        return values

    # Data -------------------------------------------------------------------------------------
    @abstractmethod
    def load(self, with_validation: bool, with_training: bool = True) -> None:
        """Read the training data (and, when asked, the validation data: rank 0 only).

        ``with_training=False`` reads only what validation needs (which images are held out
        still follows from the full training listing), for scoring models as a run validates.
        """

    @property
    @abstractmethod
    def epoch_size(self) -> int:
        """Samples per epoch (``train.batch_size`` of them make one step)."""

    @property
    @abstractmethod
    def has_validation(self) -> bool:
        """Whether there is validation data (known on every rank)."""

    @abstractmethod
    def batches(self, start: int, rank: int, world_size: int, device: torch.device) -> BatchSource:
        """Return the training batches of one process from batch ``start`` on, on ``device``.

        Batch ``b`` must be a pure function of the seed, ``b`` and the rank, so that a resumed
        run sees the same batches. A batch is anything :meth:`loss` understands.
        """

    # Optimisation -----------------------------------------------------------------------------
    @abstractmethod
    def loss(self, forward: Forward, batch: Any, step: int) -> Tensor:
        """The scalar loss of one batch (float32); ``step`` counts the steps done before it."""

    def optimisation(self, model: nn.Module) -> Optimisation:
        """Adam (``train.betas``, decay on weights only); lr held ``train.lr_hold``, then decays.

        Override it for another optimiser, schedule or a gradient clip (see
        :mod:`n3net.train.optim`).
        """
        import torch

        from n3net.train.optim import HoldExponentialSchedule, Optimisation, param_groups

        train = self.config.train
        optimizer = torch.optim.Adam(
            param_groups(model, train.weight_decay),
            lr=train.lr,
            betas=(train.betas[0], train.betas[1]),
        )
        schedule = HoldExponentialSchedule(train.lr, train.lr_final, train.lr_hold)
        return Optimisation(optimizer, schedule)

    # Validation and records -------------------------------------------------------------------
    @abstractmethod
    def validate(self, forward: Forward, device: torch.device) -> dict[str, float]:
        """Score the validation data (eval mode, no grad); one value per log column."""

    def describe(self) -> str:
        """What the run trains on, for its first log line."""
        return self.name

    def report(self, values: dict[str, float]) -> str:
        """One log line for a validation's values."""
        return "validation " + ", ".join(f"{key} {value:.4f}" for key, value in values.items())

    def metadata(self) -> dict[str, str]:
        """String entries for the saved weights (e.g. the noise level; the loop adds ``task``)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Entries for ``summary.json``."""
        return {"batch": self.config.train.batch_size}


def register_task(name: str) -> Callable[[_T], _T]:
    """Class decorator: register a :class:`Task` under ``name`` (``--task name``)."""

    def decorate(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    for module in BUILTIN_TASKS:
        importlib.import_module(module)


def task_class(name: str) -> type[Task]:
    """Return the task registered as ``name``; a one-line ValueError names the known ones."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"task.name must be one of {', '.join(list_tasks())}, got {name!r}")
    return _REGISTRY[name]


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted.

    Example:
        >>> "denoise" in list_tasks()
        True
    """
    _load_builtins()
    return sorted(_REGISTRY)
