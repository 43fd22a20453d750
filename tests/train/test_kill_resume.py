"""A run killed with SIGKILL resumes from its last checkpoint and ends as a straight run would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from n3net.train.checkpoint import load_checkpoint
from n3net.train.loop import train


def _command(root: Path, out: Path, max_steps: int) -> list[str]:
    sets = [
        "model.kwargs.depth=3",
        "model.kwargs.features=8",
        'data.train_dirs=["imgs"]',
        "data.val_images=0",
        "data.crop_size=16",
        "data.crops_per_image=4",
        "train.lr_final=1e-3",  # constant lr: the step budget may change on resume
        "train.ckpt_every=25",
        "train.ckpt_minutes=0",
        "train.tensorboard=false",
        "train.progress=none",
    ]
    command = [sys.executable, "-m", "n3net", "train", "--arch", "dncnn", "--device", "cpu"]
    for assignment in sets:
        command += ["--set", assignment]
    return command + [
        "--data-root", str(root), "--batch-size", "4", "--max-steps", str(max_steps),
        "--out", str(out),
    ]  # fmt: skip


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.slow
def test_sigkill_then_resume(tiny_root: Path, tmp_path: Path, make_config: Any) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        _command(tiny_root, out, 10**7), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while not (out / "last.pt").exists():
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.05)
    time.sleep(0.3)  # let it train past the checkpoint
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL
    saved = load_checkpoint(out / "last.pt")["step"]
    assert saved > 0 and saved % 25 == 0

    target = saved + 10
    resumed = subprocess.run(
        [*_command(tiny_root, out, target), "--resume", "auto"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out / 'last.pt'} at step {saved}" in resumed.stderr
    assert not list(out.glob(".last.pt.*"))

    straight = make_config(
        "straight",
        data={"val_images": 0},
        train={"lr_final": 1e-3, "max_steps": target, "log_every": 50},
        task={"loss_scale": 800.0},  # the command line's default for denoise
    )
    train(straight)
    a = load_checkpoint(Path(straight.train.out_dir) / "last.pt")
    b = load_checkpoint(out / "last.pt")
    assert a["step"] == b["step"] == target
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][index]["exp_avg_sq"])


def _ignore_sigint() -> None:  # as a shell does for a job started with `&`
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_checkpoints_the_last_step(
    tiny_root: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    """`kill PID` and SIGINT stop a background run with a checkpoint of its very last step."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = _command(tiny_root, out, 10**7) + ["--set", "train.ckpt_every=0"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=_ignore_sigint,
    )  # fmt: skip
    log = out / "log.csv"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) > 2):  # a few steps done
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no log rows within 120 s"
        time.sleep(0.05)
    process.send_signal(signum)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 130, output
    stopped = [line for line in output.splitlines() if "interrupted: checkpoint of step" in line]
    assert stopped, output
    step = int(stopped[-1].split("checkpoint of step ")[1].split()[0])
    assert step > 0 and load_checkpoint(out / "last.pt")["step"] == step
