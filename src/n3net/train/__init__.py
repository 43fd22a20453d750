"""Training (`n3net train`): tasks, config, data, loop, checkpoints, DDP.

Layout: :mod:`~n3net.train.tasks` (the Task interface and registry), :mod:`~n3net.train.denoise`
(the default task), :mod:`~n3net.train.image_task` (what image tasks share),
:mod:`~n3net.train.data` (crop streams), :mod:`~n3net.train.optim` (parameter groups, schedules,
clipping), :mod:`~n3net.train.config` and :mod:`~n3net.train.fields` (config sections, TOML,
flags), :mod:`~n3net.train.loop` (the task-agnostic loop), :mod:`~n3net.train.checkpoint`,
:mod:`~n3net.train.logs`, :mod:`~n3net.train.outputs`, :mod:`~n3net.train.distributed`.
A new task adds a module (see :mod:`n3net.train.tasks`); the loop is not touched.

Example:
    >>> from n3net.train import resolve_config, train  # doctest: +SKIP
    >>> train(resolve_config(sets=["model.arch='dncnn'", "train.max_minutes=10"]))  # doctest: +SKIP
"""

from n3net.train.config import DataConfig, ModelConfig, RunConfig, TrainConfig, resolve_config
from n3net.train.loop import TrainResult, train
from n3net.train.tasks import Task, TaskConfig, list_tasks, register_task

__all__ = [
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "Task",
    "TaskConfig",
    "TrainConfig",
    "TrainResult",
    "list_tasks",
    "register_task",
    "resolve_config",
    "train",
]
