"""Two-process DDP training on the CPU via torchrun (gloo), plus the single-process fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from n3net.models import load_model
from n3net.train.checkpoint import load_checkpoint
from n3net.train.distributed import DistInfo, detect, resolve_device, wrap_model


def test_detect(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert detect() == DistInfo(0, 1, 0) and detect().is_main and not detect().distributed
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = detect()
    assert info == DistInfo(3, 4, 1) and info.distributed and not info.is_main


def test_single_process_helpers() -> None:
    model = torch.nn.Conv2d(1, 1, 3)
    assert wrap_model(model, DistInfo(), torch.device("cpu")) is model
    assert resolve_device("cpu", DistInfo()) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda", DistInfo())


@pytest.mark.slow
def test_torchrun_two_processes(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    sets = [
        "model.kwargs.depth=3",
        "model.kwargs.features=8",
        'data.train_dirs=["imgs"]',
        "data.val_images=2",
        "data.crop_size=16",
        "train.val_every=0",  # validate at the end only
        "train.log_every=20",
        "train.ckpt_every=50",
        "train.tensorboard=false",
    ]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "n3net", "train", "--arch", "dncnn", "--device", "cpu", "--data-root",
        str(tiny_root), "--batch-size", "4", "--max-minutes", "0.04", "--out", str(out),
    ]  # fmt: skip
    for assignment in sets:
        command += ["--set", assignment]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("weights in") == 1  # rank 0 alone reports and saves
    # A time budget: rank 0's clock is broadcast so that both ranks stop at the same step; the
    # budget counts training steps only, so the run's minutes may fall a little short of it.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] > 10 and summary["hardware"].startswith("2 x ")
    assert summary["best_val_psnr"] is not None and 0 < summary["minutes"] < 0.5
    assert load_model(out / "model.safetensors").metadata["steps"] == str(summary["steps"])
    assert "cpu x 2" in result.stderr
    assert load_checkpoint(out / "last.pt")["step"] == summary["steps"]
