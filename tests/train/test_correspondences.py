"""The correspondences task through the real loop: loss, batches, kill and resume, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import n3net.train.loop as loop
from n3net.cli.main import main
from n3net.models import load_model
from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig, resolve_config
from n3net.train.correspondences import (
    CorrespondencesConfig,
    CorrespondencesTask,
    class_balanced_bce,
)
from n3net.train.tasks import list_tasks, task_class

MODEL = {"channels": 8, "depth": 4, "n3_block": 2, "embed_features": 8, "embed_channels": 4}


def _config(out: Path, **train: Any) -> RunConfig:
    sets = [
        "task.name='correspondences'",
        "task.points=48",
        "task.train_pairs=12",
        "task.val_pairs=3",
        "task.essential_after_steps=3",
        "model.arch='cnnet-n3'",
        *(f"model.kwargs.{key}={value}" for key, value in MODEL.items()),
        f"train.out_dir='{out}'",
        "train.device='cpu'",
        "train.batch_size=3",
        "train.max_steps=8",
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


def test_registered_with_its_defaults(tmp_path: Path) -> None:
    assert "correspondences" in list_tasks()
    assert task_class("correspondences") is CorrespondencesTask
    config = resolve_config(sets=["task.name='correspondences'"])
    assert isinstance(config.task, CorrespondencesConfig)
    assert (config.task.points, config.task.train_pairs, config.task.val_pairs) == (
        2000,
        10000,
        500,
    )
    assert config.task.essential_after_steps == 20000 and config.task.essential_weight == 0.1
    assert config.model.arch == "cnnet" and config.train.weight_decay == 0.0
    assert (config.train.lr, config.train.batch_size) == (1e-3, 32)
    with pytest.raises(ValueError, match="task.points must be >= 8, got 4"):
        resolve_config(sets=["task.name='correspondences'", "task.points=4"])


def test_class_balanced_bce_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    sp = torch.nn.functional.softplus
    expected = 0.5 * (sp(-logits[0, 0]) + sp(-logits[0, 1])) / 2 + 0.5 * sp(logits[0, 2])
    assert class_balanced_bce(logits, labels, mask).item() == pytest.approx(expected.item())


def test_batches_are_pure_functions_of_the_batch_index(tmp_path: Path) -> None:
    task = CorrespondencesTask(_config(tmp_path))
    task.load(with_validation=False)
    first = task.batches(0, 0, 1, torch.device("cpu"))
    batches = [next(first) for _ in range(3)]
    again = next(task.batches(2, 0, 1, torch.device("cpu")))
    for key, value in batches[2].items():
        assert torch.equal(value, again[key]), key
    assert batches[0]["xs"].shape == (3, 48, 4) and batches[0]["mask"].all()
    assert not torch.equal(batches[0]["xs"], batches[1]["xs"])


def test_essential_term_switches_on(tmp_path: Path) -> None:
    task = CorrespondencesTask(_config(tmp_path))
    task.load(with_validation=False)
    batch = next(task.batches(0, 0, 1, torch.device("cpu")))
    logits = torch.randn(batch["mask"].shape, generator=torch.Generator().manual_seed(0))

    def forward(xs: Tensor, mask: Tensor) -> Tensor:
        return logits

    before = task.loss(forward, batch, step=2)
    after = task.loss(forward, batch, step=3)
    assert before.item() == pytest.approx(class_balanced_bce(logits, batch["labels"]).item())
    assert after.item() > before.item()


def test_trains_and_resumes_exactly(tmp_path: Path, killed_after: Any) -> None:
    out = tmp_path / "straight"
    result = loop.train(_config(out))
    assert result.metric == "val_map" and result.steps == 8
    rows = _rows(out)
    assert list(rows[0])[:8] == [
        "step", "epoch", "lr", "loss", "val_map", "val_map5", "val_map10", "val_f1",
    ]  # fmt: skip
    assert {float(r["lr"]) for r in rows} == {1e-3}  # constant
    assert sum(1 for r in rows if r["val_map"]) == 2
    model = load_model(out / "model.safetensors")
    assert model.arch == "cnnet-n3" and model.metadata["task"] == "correspondences"
    meta = model.metadata  # what a model card is written from
    assert (
        meta["train_data"].startswith("synthetic two-view pairs 0-")
        and "split seed" in meta["train_data"]
    )
    assert "class-balanced BCE" in meta["protocol"] and "essential-matrix loss" in meta["protocol"]
    assert meta["optimizer"].startswith("Adam (0.9, 0.999) at a constant lr 0.001")

    # 8 steps straight == a checkpoint at step 4, a crash 2 steps later, a resume.
    interrupted = _config(tmp_path / "interrupted", ckpt_every=4)
    killed_after(interrupted, 6)
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt")["step"] == 6
    assert loop.train(interrupted, resume="auto").steps == 8
    a = load_checkpoint(out / "last.pt")
    b = load_checkpoint(tmp_path / "interrupted" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for state_a, state_b in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(state_a["exp_avg"], state_b["exp_avg"])


def test_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--task", "correspondences", "--arch", "cnnet", "--set",
            "model.kwargs.channels=8", "--set", "model.kwargs.depth=2", "--points", "32",
            "--train-pairs", "4", "--val-pairs", "2", "--essential-after-steps", "1",
            "--device", "cpu", "--batch-size", "2", "--max-steps", "2", "--no-tensorboard",
            "--progress", "none", "--out", str(tmp_path / "cli")]  # fmt: skip
    assert main([*argv, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"]["name"] == "correspondences" and printed["task"]["points"] == 32
    assert main(argv) == 0
    assert "best validation val_map" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").is_file()
    assert main([*argv[:-2], "--sigma", "25", "--out", str(tmp_path / "x")]) == 2
    assert "unknown key task.sigma" in capsys.readouterr().err
