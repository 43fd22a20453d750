"""`n3net train`: train a model for a task (default: Gaussian denoising), resumable, multi-process.

Every field of the config sections (:mod:`n3net.train.config`, and each task's ``[task]`` table)
is a flag, derived by :func:`n3net.train.fields.add_flags`: ``train.batch_size`` is
``--batch-size``, ``task.sigma`` is ``--sigma``, its help the field's docstring entry. So flags,
TOML keys and help cannot drift apart.

Examples:
    n3net train --arch dncnn --sigma 25 --max-minutes 60 --out runs/dncnn25
    n3net train --config my.toml --set train.lr=5e-4 --resume auto
    torchrun --nproc_per_node 2 -m n3net train --arch n3net --device cpu --max-steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

_EPILOG = """\
Configuration, each overriding the one before: the dataclass defaults (the paper's protocol) <
the task's defaults < its --preset < --config FILE.toml ([model] [data] [train] [task] tables) <
--set section.key=value < the flags above (each flag names its key in brackets).
--print-config shows the result. Relative data folders resolve under --data-root ($N3NET_DATA).
The run folder gets last.pt (checkpoint), log.csv, tensorboard/, curves.png, config.json,
summary.json, last.safetensors and model.safetensors (best validation weights).
"""


class _TrainParser(argparse.ArgumentParser):
    """The `train` parser; it adds the tasks' flags when it is first used.

    The tasks' modules import torch, which `n3net --help` and the other commands should not pay
    for, so their ``[task]`` options join the parser only when `train` parses or prints help.
    """

    _task_flags: dict[str, Any] | None = None

    def add_task_flags(self) -> None:
        if self._task_flags is not None:
            return
        from n3net.train.fields import add_flags
        from n3net.train.tasks import list_tasks, task_class

        self._task_flags = dict(self._core_flags)
        for name in list_tasks():
            group = self.add_argument_group(f"options of task {name} ([task] table)")
            add_flags(group, "task", task_class(name).Config, self._task_flags)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.add_task_flags()
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def format_help(self) -> str:
        self.add_task_flags()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        """One line, not the long usage block: ``n3net train: error: ...``, exit code 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    from n3net.train.config import DataConfig, ModelConfig, TrainConfig
    from n3net.train.fields import add_flags

    parser = subparsers.add_parser(
        "train",
        help="train a model (default task: Gaussian denoising; resumable; torchrun for several "
        "processes)",
        description="Train a model for a task. The default task, denoise, follows the paper's "
        "protocol: random crops with flips and rotations, noise added on the fly, Adam, "
        "exponential lr decay, validation on held-out training images, atomic checkpoints that "
        "resume exactly.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.__class__ = _TrainParser  # subparsers build plain parsers; see _TrainParser
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with [model] [data] [train] [task]"
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one value (TOML syntax; repeatable), e.g. model.kwargs.depth=17",
    )
    parser.add_argument(
        "--task", dest="task.name", default=argparse.SUPPRESS, metavar="NAME",
        help="what to train (default denoise) [task.name]",
    )  # fmt: skip
    parser.add_argument(
        "--resume", metavar="PATH|auto", help="continue a checkpoint; auto: OUT/last.pt if any"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace finished weights in the run folder"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    taken: dict[str, Any] = {"--task": ("task.name", str)}
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
        add_flags(parser.add_argument_group(f"{section} options"), section, cls, taken)
    parser._core_flags = taken  # type: ignore[attr-defined]
    parser.set_defaults(func=run)


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config values the user typed as flags, as nested ``{section: {key: value}}``."""
    overrides: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        section, dot, key = dest.partition(".")
        if dot:
            overrides.setdefault(section, {})[key] = value
    return overrides


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    from n3net.train.config import resolve_config

    config = resolve_config(args.config, args.sets, flag_overrides(args))
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from n3net.train.loop import train

    train(config, resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _exit_now()
    return 0


def _exit_now() -> NoReturn:
    """End a torchrun worker without the interpreter's teardown, once all its work is written.

    DistributedDataParallel keeps references to the Gloo process group that are never released,
    so its worker threads are still alive after ``destroy_process_group``. When the interpreter
    then tears down, C++ destroys those still-joinable threads and aborts the process ("terminate
    called without an active exception", SIGABRT), depending on thread timing. Every output is
    already written and synchronised (the loop ends with a barrier), so skipping the teardown
    loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
