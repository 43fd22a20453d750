"""The `sr` task: config, pure batches with mixed scales, optimisation, exact resume, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

from n3net.cli.main import main
from n3net.degradations import bicubic_degrade
from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig, resolve_config
from n3net.train.loop import train
from n3net.train.optim import ClipGradByLr, Progress, StepFractionSchedule
from n3net.train.tasks import task_class

pytest.importorskip("resize_right")

TINY_VDSR = {"arch": "vdsr", "kwargs": {"depth": 3, "features": 4}}


def _config(root: Path, out: Path, **sections: dict[str, Any]) -> RunConfig:
    values: dict[str, Any] = {
        "model": dict(TINY_VDSR),
        "data": {
            "root": str(root), "train_dirs": ["imgs"], "val_dir": None, "val_images": 2,
            "crop_size": 12, "crops_per_image": 4,
        },
        "train": {
            "batch_size": 4, "max_steps": 8, "device": "cpu", "out_dir": str(out),
            "tensorboard": False, "progress": "none", "log_every": 2, "val_every": 4,
            "ckpt_every": 0, "ckpt_minutes": 0,
        },
        "task": {"name": "sr", "val_size": 12},
    }  # fmt: skip
    for section, entries in sections.items():
        values[section].update(entries)
    return RunConfig.from_dict(values)


def test_defaults_are_the_budget_and_the_paper_is_a_preset() -> None:
    config = resolve_config(sets=['task.name="sr"'])
    assert config.model.arch == "n3net-sr" and config.data.preset == "budget"
    assert config.data.train_dirs == ["t91", "bsd200"] and config.data.crop_size == 80
    assert config.data.val_dir == "bsds500_test"
    assert (config.train.lr, config.train.weight_decay, config.train.batch_size) == (1e-3, 1e-4, 32)
    assert config.task.scales == [2, 3, 4] and config.task.optimizer == "adam"
    assert (config.train.lr_hold, config.train.lr_final) == (0.3, 1e-6)
    paper = resolve_config(sets=['task.name="sr"', 'data.preset="paper"'])
    assert paper.task.optimizer == "sgd" and paper.train.lr == 0.1
    assert (paper.data.crops_per_image, paper.train.epochs) == (3833, 80)


@pytest.mark.parametrize(
    "task, message",
    [
        ({"scales": [1, 2]}, "task.scales must be integers >= 2"),
        ({"scales": [2, 2]}, "must not repeat"),
        ({"val_size": 20}, "task.val_size must be 0 or a multiple of every scale"),
        ({"clip": -1.0}, "task.clip must be >= 0"),
    ],
)
def test_config_errors(task: dict[str, Any], message: str, tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        _config(tiny_root, tmp_path, task={"name": "sr", **task})


def test_batches_are_pure_and_mix_scales(tiny_root: Path, tmp_path: Path) -> None:
    config = _config(tiny_root, tmp_path, train={"batch_size": 16})
    task = task_class("sr")(config)
    task.load(with_validation=True)
    assert len(task.val_images) == 2 and task.columns == (
        "val_psnr", "val_psnr_x2", "val_psnr_x3", "val_psnr_x4",
    )  # fmt: skip
    stream = task.batches(0, 0, 1, torch.device("cpu"))
    batches = [next(stream) for _ in range(3)]
    resumed = next(task.batches(2, 0, 1, torch.device("cpu")))
    assert all(torch.equal(a, b) for a, b in zip(batches[2], resumed, strict=True))
    interpolated, target = batches[0]
    assert interpolated.shape == target.shape == (16, 1, 12, 12)
    matched = set()  # which scale made each input
    for index in range(16):
        for scale in (2, 3, 4):
            if torch.allclose(
                interpolated[index], bicubic_degrade(target[index : index + 1], scale)[0], atol=1e-6
            ):  # noqa: E501
                matched.add(scale)
    assert matched == {2, 3, 4}


def test_optimisation_choices(tiny_root: Path, tmp_path: Path) -> None:
    model = torch.nn.Conv2d(1, 1, 3)
    config = _config(
        tiny_root, tmp_path, train={"lr": 0.1}, task={"name": "sr", "optimizer": "sgd"}
    )
    sgd = task_class("sr")(config).optimisation(model)
    assert isinstance(sgd.optimizer, torch.optim.SGD)
    assert sgd.optimizer.param_groups[0]["momentum"] == 0.9
    assert isinstance(sgd.schedule, StepFractionSchedule)
    assert f"{sgd.schedule(Progress(0, 0.5, 0.0)):.3g}" == "0.001"
    assert isinstance(sgd.clip, ClipGradByLr) and sgd.clip.theta == 1e-3
    adam = _config(tiny_root, tmp_path, task={"name": "sr", "optimizer": "adam", "val_size": 12})
    assert isinstance(task_class("sr")(adam).optimisation(model).optimizer, torch.optim.Adam)


class _Crash(Exception):
    pass


def test_killed_run_resumes_to_identical_weights(
    tiny_root: Path, tmp_path: Path, killed_after: Any
) -> None:
    straight = _config(tiny_root, tmp_path / "straight", train={"ckpt_every": 4})
    train(straight)
    interrupted = _config(tiny_root, tmp_path / "killed", train={"ckpt_every": 4})
    killed_after(interrupted, 6, _Crash)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["step"] == 4
    assert train(interrupted, resume="auto").steps == 8
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_command_line_run_then_upscale(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "train", "--task", "sr", "--arch", "vdsr", "--set", "model.kwargs.depth=3",
        "--set", "model.kwargs.features=4", "--data-root", str(tiny_root),
        "--set", 'data.train_dirs=["imgs"]', "--set", "data.val_dir=''", "--val-images", "2",
        "--crop-size", "12", "--crops-per-image", "2", "--val-size", "12", "--scales", "2", "3",
        "--batch-size", "4", "--max-steps", "4", "--val-every", "2", "--device", "cpu",
        "--no-tensorboard", "--progress", "none", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "validation Y-PSNR" in captured.out + captured.err
    with (out / "log.csv").open() as file:
        rows = [r for r in csv.DictReader(file) if r["val_psnr_x3"]]
    assert rows and float(rows[-1]["val_psnr_x2"]) > 0
    from n3net.inference import Upscaler
    from n3net.models import model_metadata

    assert model_metadata(out / "model.safetensors")["scales"] == "2,3"
    assert Upscaler(out, 3).upscale_tensor(torch.rand(1, 3, 5, 4)).shape == (1, 3, 15, 12)
    with pytest.raises(ValueError, match="trained for scales 2, 3, not 4"):
        Upscaler(out, 4)


@pytest.mark.parametrize("task_name", ["denoise", "sr"])
def test_validation_only_load_reads_the_same_held_out_images(
    task_name: str, tiny_root: Path, tmp_path: Path, make_config: Any
) -> None:
    """``with_training=False`` (scripts/validate_models.py) skips the bank, not the hold-out."""
    config = _config(tiny_root, tmp_path) if task_name == "sr" else make_config()
    full, validation_only = task_class(task_name)(config), task_class(task_name)(config)
    full.load(with_validation=True)
    validation_only.load(with_validation=True, with_training=False)
    assert len(full.bank) > 0 and len(validation_only.bank) == 0
    assert validation_only.val_count == full.val_count == 2
    assert len(validation_only.val_images) == len(full.val_images) == 2
    for kept, alone in zip(full.val_images, validation_only.val_images, strict=True):
        assert torch.equal(kept, alone)
