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

from __future__ import annotations

from typing import Any

# Names load on first access: the CLI reads the config classes without importing torch.
_LAZY = {
    "DataConfig": "n3net.train.config",
    "ModelConfig": "n3net.train.config",
    "RunConfig": "n3net.train.config",
    "TrainConfig": "n3net.train.config",
    "resolve_config": "n3net.train.config",
    "TrainResult": "n3net.train.loop",
    "train": "n3net.train.loop",
    "Task": "n3net.train.tasks",
    "TaskConfig": "n3net.train.tasks",
    "list_tasks": "n3net.train.tasks",
    "register_task": "n3net.train.tasks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
