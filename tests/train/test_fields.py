"""Config from one source: type-hint conversion, docstring help, generated flags."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Literal

import pytest

from n3net.cli.main import build_parser
from n3net.cli.train import flag_overrides
from n3net.train.config import DataConfig, ModelConfig, TrainConfig, resolve_config
from n3net.train.fields import add_flags, convert, field_help
from n3net.train.tasks import list_tasks, task_class

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _train_parser() -> argparse.ArgumentParser:
    subparsers = next(
        a for a in build_parser(["train"])._actions if isinstance(a, argparse._SubParsersAction)
    )
    parser = subparsers.choices["train"]
    parser.add_task_flags()  # type: ignore[attr-defined]
    return parser


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        (3, float, 3.0),
        (4.0, int, 4),
        (None, int | None, None),
        ("bf16", Literal["none", "bf16"], "bf16"),
        ([1, 2.5], list[float], [1.0, 2.5]),
        ({"depth": 3}, dict[str, Any], {"depth": 3}),
        (True, bool, True),
    ],
)
def test_convert(value: Any, hint: Any, expected: Any) -> None:
    result = convert("s.k", value, hint)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "value, hint, message",
    [
        ("abc", int, "s.k must be an integer, got 'abc'"),
        (2.5, int, "s.k must be an integer, got 2.5"),
        (True, int, "s.k must be an integer, got True"),
        (1, bool, "s.k must be true or false, got 1"),
        (1, str, "s.k must be a string, got 1"),
        ("fp16", Literal["none", "bf16"], "s.k must be one of none, bf16, got 'fp16'"),
        ("a", list[str], "s.k must be a list, got 'a'"),
        ([1], list[str], r"s.k\[0\] must be a string, got 1"),
        (None, float, "s.k must not be empty"),
        (3, dict[str, Any], "s.k must be a table, got 3"),
    ],
)
def test_convert_errors(value: Any, hint: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert("s.k", value, hint)


def test_every_field_has_help_and_a_flag() -> None:
    """Help comes from the docstrings: a field without an entry would have none."""
    sections = dict(SECTIONS, **{f"task {n}": task_class(n).Config for n in list_tasks()})
    for name, cls in sections.items():
        helps = field_help(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not helps.get(f.name)]
        assert not missing, f"{name}: fields without an Attributes entry: {missing}"
    dests = {a.dest for a in _train_parser()._actions if "." in a.dest}
    expected = {
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.name != "kwargs"  # a table: --set model.kwargs.NAME=VALUE
    }
    assert expected <= dests and "task.sigma" in dests and "task.name" in dests


def test_documented_flags_still_exist() -> None:
    """The flags that model cards and scripts use."""
    flags = {option for a in _train_parser()._actions for option in a.option_strings}
    old = "arch sigma preset data-root max-minutes max-steps batch-size device amp channels-last "
    old += "sampler workers seed out config set resume overwrite print-config task"
    assert {f"--{name}" for name in old.split()} <= flags


def test_flags_equal_set_overrides() -> None:
    argv = [
        "--arch", "dncnn", "--sigma", "15", "--preset", "dncnn", "--train-dirs", "a", "b",
        "--betas", "0.8", "0.9", "--no-tensorboard", "--channels-last", "--amp", "bf16",
        "--max-steps", "7", "--out", "runs/x", "--data-root", "/data", "--lr", "2e-3",
    ]  # fmt: skip
    args = _train_parser().parse_args(argv)
    from_flags = resolve_config(None, args.sets, flag_overrides(args))
    sets = [
        "model.arch='dncnn'", "task.sigma=15", "data.preset='dncnn'", "data.train_dirs=['a','b']",
        "train.betas=[0.8, 0.9]", "train.tensorboard=false", "train.channels_last=true",
        "train.amp='bf16'", "train.max_steps=7", "train.out_dir='runs/x'", "data.root='/data'",
        "train.lr=2e-3",
    ]  # fmt: skip
    assert from_flags == resolve_config(sets=sets)
    assert flag_overrides(_train_parser().parse_args([])) == {}  # untyped flags change nothing


def test_flag_clashes_are_errors() -> None:
    @dataclasses.dataclass
    class Clash:
        """Attributes:
        seed: another seed.
        """

        seed: int = 0

    taken: dict[str, Any] = {}
    parser = argparse.ArgumentParser()
    add_flags(parser, "train", TrainConfig, taken)
    with pytest.raises(ValueError, match="flag --seed of task.seed clashes with train.seed"):
        add_flags(parser, "task", Clash, taken)
