"""The training loop: schedule, parameter groups, a run's outputs, exact resume, run folders."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import n3net.train.loop as loop
from n3net.models import load_model
from n3net.train import precision
from n3net.train.checkpoint import load_checkpoint
from n3net.train.loop import train


def _rows(out_dir: Path) -> list[dict[str, str]]:
    with (out_dir / "log.csv").open() as file:
        return list(csv.DictReader(file))


def test_run_writes_outputs(make_config: Any) -> None:
    config = make_config(train={"ckpt_every": 5, "tensorboard": True})
    result = train(config)
    out = Path(config.train.out_dir)
    pytest.importorskip("tensorboard")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert result.steps == 12
    for name in ("model.safetensors", "last.safetensors", "last.pt", "log.csv", "config.json",
                 "summary.json", "curves.png"):  # fmt: skip
        assert (out / name).is_file(), name
    rows = _rows(out)
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    assert [bool(r["val_psnr"]) for r in rows] == [False, True, False, True, False, True]
    assert all(float(r["loss"]) > 0 for r in rows)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True)
    model = load_model(out / "model.safetensors")
    assert model.metadata["sigma"] == "25" and model.metadata["steps"] == "12"
    assert "best validation" in model.metadata["weights"]
    train_config = config.train
    assert model.metadata["batch_size"] == str(train_config.batch_size)
    assert model.metadata["loss"] == f"{config.task.loss_scale:g} x MSE"
    recipe = model.metadata["recipe"]  # the optimisation in words, as the model card shows it
    assert recipe.startswith("Adam (betas 0.9, 0.999), L2 weight decay ")
    assert f"lr {train_config.lr:g}" in recipe and f"seed {train_config.seed}" in recipe
    assert isinstance(model(torch.rand(1, 1, 20, 20)), torch.Tensor)
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 12 and state["best"]["step"] == result.best_step
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_records_what_it_resolved_to(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any, native: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    config = make_config(train={"amp": "auto", "max_steps": 2, "val_every": 0})
    train(config)
    saved = json.loads((Path(config.train.out_dir) / "config.json").read_text())
    assert saved["train"]["amp"] == ("bf16" if native else "none")
    assert config.train.amp == "auto"  # the caller's config is left as it was
    assert "warning" not in capsys.readouterr().err


def test_emulated_bf16_is_warned_about(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    train(make_config(train={"amp": "bf16", "max_steps": 1, "val_every": 0}))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "bf16 autocast is emulated" in warnings[0]


def test_n3net_bf16_channels_last(make_config: Any) -> None:
    model = {
        "arch": "n3net",
        "kwargs": {"k": 2, "depth": 3, "features": 8, "embed_features": 8, "search_window": 3},
    }
    config = make_config(
        model=model,
        data={"crop_size": 20},
        train={"max_steps": 3, "amp": "bf16", "channels_last": True, "val_every": 0},
    )
    result = train(config)
    assert result.steps == 3 and result.best is not None
    assert load_model(Path(config.train.out_dir) / "model.safetensors").arch == "n3net"


class _Crash(Exception):
    pass


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("sampler", ["device", "loader"])
def test_exact_resume(make_config: Any, killed_after: Any, sampler: str) -> None:
    """12 steps straight == 6 steps, a crash 3 steps later, resume from step 6, 6 more."""
    sections = {"data": {"sampler": sampler}, "train": {"workers": 0, "ckpt_every": 6}}
    straight = make_config("straight", **sections)
    train(straight)
    interrupted = make_config("interrupted", **sections)
    killed_after(interrupted, 9, _Crash)
    out = Path(interrupted.train.out_dir)
    assert load_checkpoint(out / "last.pt")["step"] == 6
    assert max(int(r["step"]) for r in _rows(out)) == 8  # rows past the checkpoint
    assert train(interrupted, resume="auto").steps == 12
    a = load_checkpoint(Path(straight.train.out_dir) / "last.pt")
    b = load_checkpoint(out / "last.pt")
    for key in ("step", "model", "optimizer", "best", "rng", "last_val"):
        _assert_same(a[key], b[key], key)
    rows_a, rows_b = _rows(Path(straight.train.out_dir)), _rows(out)
    drop = ("elapsed_s", "imgs_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_a] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows_b
    ]


def test_interrupt_saves_checkpoint(make_config: Any, killed_after: Any) -> None:
    config = make_config()
    killed_after(config, 5)
    assert load_checkpoint(Path(config.train.out_dir) / "last.pt")["step"] == 5


def test_run_folder_protection(make_config: Any) -> None:
    config = make_config(train={"max_steps": 2, "val_every": 0})
    train(config)
    with pytest.raises(FileExistsError, match="model.safetensors exists; pass --overwrite"):
        train(config)
    with pytest.raises(FileExistsError, match="model.safetensors exists"):
        train(config, resume="auto")
    assert train(config, overwrite=True).steps == 2
    (Path(config.train.out_dir) / "model.safetensors").unlink()
    with pytest.raises(FileExistsError, match="last.pt exists; pass --resume auto"):
        train(config)
    other = make_config(model={"kwargs": {"depth": 4}}, train={"max_steps": 4})
    with pytest.raises(ValueError, match="resume with the same model"):
        train(other, resume=str(Path(config.train.out_dir) / "last.pt"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train(make_config("fresh"), resume=str(Path(config.train.out_dir) / "nope.pt"))


def test_time_budget(make_config: Any) -> None:
    config = make_config(train={"max_steps": None, "max_minutes": 0.02, "val_every": 0})
    result = train(config)
    assert result.steps > 0
    rows = _rows(Path(config.train.out_dir))
    assert float(rows[-1]["lr"]) < 1e-3


def test_time_budget_becomes_steps(make_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock that advances 10 ms per reading: the step time is what the loop measures.
    ticks = iter(range(10**9))
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks) * 0.01)
    config = make_config(
        train={"max_steps": None, "max_minutes": 0.02, "val_every": 10, "log_every": 5}
    )
    result = train(config)
    budget = load_checkpoint(Path(config.train.out_dir) / "last.pt")["budget"]
    # 1.2 s of training at ~10 ms a step; validation (every 10 steps) does not count.
    assert budget["time_steps"] == result.steps
    assert 60 <= result.steps <= 130
    rows = _rows(Path(config.train.out_dir))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 2e-6


def test_hold_schedule_keeps_lr(make_config: Any) -> None:
    config = make_config(train={"max_steps": 12, "lr_hold": 0.5, "log_every": 1, "val_every": 0})
    train(config)
    lrs = [float(r["lr"]) for r in _rows(Path(config.train.out_dir))]
    assert lrs[:7] == [1e-3] * 7 and lrs[7] < 1e-3
    with pytest.raises(ValueError, match=r"train.lr_hold must be in \[0, 1\), got 1.0"):
        make_config("bad", train={"lr_hold": 1.0})


def test_validation_folder_and_no_validation(make_config: Any, tiny_root: Path) -> None:
    config = make_config(data={"val_dir": str(tiny_root / "imgs")}, train={"max_steps": 2})
    assert train(config).best is not None
    config = make_config("noval", data={"val_images": 0}, train={"max_steps": 2})
    result = train(config)
    assert result.best is None
    model = load_model(Path(config.train.out_dir) / "model.safetensors")
    assert model.metadata["weights"] == "last"
    with pytest.raises(ValueError, match="leaves no training images"):
        train(make_config("all", data={"val_images": 8}))


def test_train_step_skips_non_finite_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    clean = torch.rand(2, 1, 8, 8)
    loss = loop.train_step(model, optimizer, lambda: F.mse_loss(model(clean + 0.1), clean))
    assert math.isfinite(float(loss))
    before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    noisy = clean.clone()
    noisy[0, 0, 3, 3] = math.nan
    skipped = loop.train_step(model, optimizer, lambda: F.mse_loss(model(noisy), clean))
    assert math.isnan(float(skipped))
    _assert_same(model.state_dict(), before[0], "model")
    _assert_same(optimizer.state_dict(), before[1], "optimizer")
    assert all(p.grad is None for p in model.parameters())


def test_run_skips_non_finite_steps_and_gives_up(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real, calls = loop.train_step, []

    def step(model: nn.Module, optimizer: Any, compute_loss: Any, *args: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) in (3, 4):  # two poisoned batches, then normal ones
            return real(model, optimizer, lambda: compute_loss() * math.nan, *args)
        return real(model, optimizer, compute_loss, *args)

    monkeypatch.setattr(loop, "train_step", step)
    config = make_config(train={"log_every": 1, "val_every": 0})
    result = train(config)
    out = Path(config.train.out_dir)
    assert result.steps == 12
    assert json.loads((out / "summary.json").read_text())["skipped_steps"] == 2
    rows = _rows(out)
    assert all(math.isfinite(float(r["loss"])) for r in rows if r["loss"])
    assert [int(r["step"]) for r in rows if not r["loss"]] == [3, 4]  # nothing to average

    monkeypatch.setattr(loop, "train_step", lambda *a: torch.tensor(math.nan))
    with pytest.raises(RuntimeError, match="20 steps in a row"):
        train(make_config(train={"max_steps": 40, "out_dir": str(tmp_path / "nan")}))


def test_skipped_step_keeps_batchnorm_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    clean = torch.rand(2, 1, 8, 8)
    loop.train_step(model, optimizer, lambda: F.mse_loss(model(clean + 0.1), clean))
    before = copy.deepcopy(model.state_dict())
    poisoned = torch.full_like(clean, math.nan)
    loop.train_step(model, optimizer, lambda: F.mse_loss(model(poisoned), clean))
    _assert_same(model.state_dict(), before, "model")


def test_progress_lines_between_log_rows(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Slow steps or a long log_every still show progress (a line at most every 30 s)."""
    import n3net.train.logs as logs

    monkeypatch.setattr(logs, "_LINE_SECONDS", 0.0)  # every step is "30 s later"
    config = make_config(train={"progress": "lines", "log_every": 100, "max_steps": 3,
                                "val_every": 0})  # fmt: skip
    train(config)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    steps = [line.split("] step ")[1].split()[0] for line in lines]  # "[ 33.3%] step 1 loss"
    assert steps == ["1", "2", "3"]
    assert all(" loss " in line and " img/s" in line for line in lines)
    assert [int(row["step"]) for row in _rows(Path(config.train.out_dir))] == [3]
