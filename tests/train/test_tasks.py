"""A second task, defined here, trains with the real loop: the loop knows no task.

The toy task regresses a value per point of variable-size sets (padded, with masks), from
dict batches; its loss gains an extra term after a number of steps; it trains with SGD, a step
lr schedule and gradient clipping; its metric is an error (lower is better). None of that is in
the package's loop, logs, checkpoints or config.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import n3net.train.loop as loop
from n3net.cli.main import main
from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig, resolve_config
from n3net.train.data import mix_seed
from n3net.train.optim import ClipGradNorm, Optimisation, StepSchedule
from n3net.train.tasks import Forward, Task, TaskConfig, list_tasks, register_task, task_class


@dataclass
class ToySetsConfig(TaskConfig):
    """The toy task's ``[task]`` table.

    Attributes:
        max_points: the largest set; sets have 2 to max_points points.
        extra_after: the step from which the loss adds the L1 term.
    """

    name: str = field(default="toy-sets", metadata={"flag": "task"})
    max_points: int = 6
    extra_after: int = 4


def _sets(seed: int, count: int, max_points: int) -> dict[str, Tensor]:
    """Sets of 2-D points padded to max_points; target: each point's distance to the set mean."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.randn(count, max_points, 2, generator=generator)
    sizes = torch.randint(2, max_points + 1, (count,), generator=generator)
    mask = torch.arange(max_points)[None] < sizes[:, None]  # (B, N)
    mean = (points * mask[..., None]).sum(1, keepdim=True) / sizes[:, None, None]
    target = (points - mean).norm(dim=-1) * mask
    return {"points": points, "mask": mask, "target": target}


class _Batches:
    """Counter-based: batch b of rank r is a pure function of (seed, b, r)."""

    def __init__(self, data: dict[str, Tensor], seed: int, size: int, start: int, rank: int,
                 device: torch.device) -> None:  # fmt: skip
        self.data, self.seed, self.size, self.rank, self.device = data, seed, size, rank, device
        self.batch = start

    def __next__(self) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, 7, self.batch, self.rank))
        self.batch += 1
        pick = torch.randint(0, len(self.data["mask"]), (self.size,), generator=generator)
        return {key: value[pick].to(self.device) for key, value in self.data.items()}

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return self

    def close(self) -> None:
        pass


@register_task("toy-sets")
class ToySetsTask(Task):
    Config = ToySetsConfig
    metric = "val_mse"
    maximize = False
    columns = ("val_mse", "val_l1")
    defaults = {"train": {"lr": 0.05}}

    options: ToySetsConfig

    def load(self, with_validation: bool) -> None:
        seed, points = self.config.train.seed, self.options.max_points
        self.train_sets = _sets(mix_seed(seed, 5), 64, points)
        self.val_sets = _sets(mix_seed(seed, 6), 16, points) if with_validation else None

    @property
    def epoch_size(self) -> int:
        return 64

    @property
    def has_validation(self) -> bool:
        return True

    def batches(self, start: int, rank: int, world_size: int, device: torch.device) -> _Batches:
        size = self.config.train.batch_size // world_size
        return _Batches(self.train_sets, self.config.train.seed, size, start, rank, device)

    @staticmethod
    def _errors(forward: Forward, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mask = batch["mask"].float()
        error = (forward(batch["points"], batch["mask"]) - batch["target"]) * mask
        count = mask.sum()
        return error.square().sum() / count, error.abs().sum() / count

    def loss(self, forward: Forward, batch: dict[str, Tensor], step: int) -> Tensor:
        mse, l1 = self._errors(forward, batch)
        return mse + l1 if step >= self.options.extra_after else mse

    def optimisation(self, model: nn.Module) -> Optimisation:
        lr = self.config.train.lr
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        return Optimisation(optimizer, StepSchedule(lr, every_epochs=1, gamma=0.5), ClipGradNorm(1))

    def validate(self, forward: Forward, device: torch.device) -> dict[str, float]:
        assert self.val_sets is not None
        batch = {key: value.to(device) for key, value in self.val_sets.items()}
        mse, l1 = self._errors(forward, batch)
        return {"val_mse": float(mse), "val_l1": float(l1)}

    def metadata(self) -> dict[str, str]:
        return {"max_points": str(self.options.max_points)}


class _SetRegressor(nn.Module):
    """Per point: an MLP of the point and of its set's masked mean."""

    def __init__(self, features: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, features), nn.ReLU(), nn.Linear(features, 1))

    def forward(self, points: Tensor, mask: Tensor) -> Tensor:
        weights = mask.float()[..., None]  # (B, N, 1)
        mean = (points * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
        both = torch.cat([points, mean.expand_as(points)], dim=-1)  # (B, N, 4)
        return self.net(both)[..., 0]


@pytest.fixture
def toy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop builds models with n3net.models.create_model; build the toy model instead."""
    import n3net.models

    def create(arch: str, **kwargs: Any) -> nn.Module:
        assert arch == "toy-set-regressor"
        model = _SetRegressor(**kwargs)
        model.arch, model.config = arch, dict(kwargs)
        return model

    monkeypatch.setattr(n3net.models, "create_model", create)


def _config(out: Path, **train: Any) -> RunConfig:
    sets = [
        "task.name='toy-sets'",
        "model.arch='toy-set-regressor'",
        "model.kwargs.features=8",
        f"train.out_dir='{out}'",
        "train.device='cpu'",
        "train.batch_size=8",
        "train.max_steps=16",
        "train.val_every=4",
        "train.log_every=2",
        "train.ckpt_every=0",
        "train.ckpt_minutes=0",
        "train.tensorboard=false",
        "train.progress='none'",
    ]
    sets += [f"train.{key}={json.dumps(value)}" for key, value in train.items()]
    return resolve_config(sets=sets)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open() as file:
        return list(csv.DictReader(file))


def test_config_of_a_registered_task(tmp_path: Path) -> None:
    assert "toy-sets" in list_tasks() and task_class("toy-sets") is ToySetsTask
    config = _config(tmp_path)
    assert isinstance(config.task, ToySetsConfig) and config.task.max_points == 6
    assert config.train.lr == 0.05  # the task's default
    assert config.data.preset is None  # the toy task has no presets
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown key task.sigma"):
        resolve_config(sets=["task.name='toy-sets'", "task.sigma=25"])


def test_toy_task_trains_and_resumes_exactly(
    tmp_path: Path, toy_model: None, killed_after: Any
) -> None:
    straight = _config(tmp_path / "straight")
    result = loop.train(straight)
    out = tmp_path / "straight"
    assert result.metric == "val_mse" and result.steps == 16
    rows = _rows(out)
    assert list(rows[0]) == [
        "step", "epoch", "lr", "loss", "val_mse", "val_l1", "elapsed_s", "imgs_per_s",
    ]  # fmt: skip
    assert [float(r["lr"]) for r in rows] == [0.05] * 4 + [0.025] * 4  # halved after 8 steps
    validated = [float(r["val_mse"]) for r in rows if r["val_mse"]]
    assert len(validated) == 4 and result.best == pytest.approx(min(validated), rel=1e-5)
    assert result.best_step == 4 * (1 + validated.index(min(validated)))  # lower is better
    assert validated[-1] < validated[0]  # it learns
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "toy-sets" and summary["best_val_mse"] == result.best

    # 16 steps straight == 8 steps with a checkpoint, a crash 2 steps later, a resume.
    interrupted = _config(tmp_path / "interrupted", ckpt_every=8)
    killed_after(interrupted, 10)
    resumed_from = load_checkpoint(tmp_path / "interrupted" / "last.pt")["step"]
    assert resumed_from == 10  # an interrupt writes a checkpoint too; resume from it
    assert loop.train(interrupted, resume="auto").steps == 16
    a = load_checkpoint(out / "last.pt")
    b = load_checkpoint(tmp_path / "interrupted" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    momentum = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    assert all(
        torch.equal(m, s["momentum_buffer"])
        for m, s in zip(momentum, b["optimizer"]["state"].values(), strict=True)
    )
    assert a["best"] == {**b["best"], "model": a["best"]["model"]}
    drop = ("elapsed_s", "imgs_per_s")
    clean = [[{k: v for k, v in r.items() if k not in drop} for r in _rows(p)] for p in
             (out, tmp_path / "interrupted")]  # fmt: skip
    assert clean[0] == clean[1]


def test_toy_task_from_the_command_line(
    tmp_path: Path, toy_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--task", "toy-sets", "--arch", "toy-set-regressor", "--max-points", "5",
            "--extra-after", "1", "--device", "cpu", "--batch-size", "4", "--max-steps", "2",
            "--no-tensorboard", "--progress", "none", "--out", str(tmp_path / "cli")]  # fmt: skip
    assert main([*argv, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == {"name": "toy-sets", "max_points": 5, "extra_after": 1}
    assert main(argv) == 0
    assert "best validation val_mse" in capsys.readouterr().out
    assert main([*argv[:-2], "--sigma", "25", "--out", str(tmp_path / "x")]) == 2
    assert "unknown key task.sigma" in capsys.readouterr().err
