"""scripts/train_gpu.sh at tiny scale on the CPU: train, summary, evaluation, packing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.slow
def test_recipe_on_cpu(tiny_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_root / "imgs", data / "train")
    for name in ("set12", "bsd68"):
        (data / name).mkdir()
        shutil.copy(tiny_root / "imgs" / "g6.png", data / name / "x.png")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHON": sys.executable,
        "DATA": str(data),
        "DEVICE": "cpu",
        "CROP": "16",
        "BATCH": "4",
        "VAL_IMAGES": "2",
        "VAL_EVERY": "50",
        "MODEL_ARGS": "--set model.kwargs.depth=3 --set model.kwargs.features=8 "
        "--set train.tensorboard=false",
        "PACK": str(tmp_path / "runs.tar"),
    }
    out = tmp_path / "runs"
    command = ["bash", str(_REPO / "scripts" / "train_gpu.sh"), str(out), "0.03", "dncnn"]
    result = subprocess.run(
        command, cwd=_REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== summary" in result.stdout and "dncnn" in result.stdout
    for name in ("model.safetensors", "log.csv", "curves.png", "summary.json", "last.pt"):
        assert (out / "dncnn" / name).is_file(), name
    if "evaluation skipped" not in result.stdout:
        assert (out / "eval.json").is_file()
    with tarfile.open(tmp_path / "runs.tar") as tar:
        names = tar.getnames()
    assert "runs/dncnn/model.safetensors" in names
    assert not [n for n in names if n.endswith(".pt")]
    # A second call skips the finished run.
    again = subprocess.run(command, cwd=_REPO, env={**env, "EVAL": "0"}, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0 and "already trained" in again.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_step_budget_and_a_bad_budget(tiny_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_root / "imgs", data / "train")
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "DATA": str(data),
        "DEVICE": "cpu", "CROP": "16", "BATCH": "4", "VAL_IMAGES": "2", "VAL_EVERY": "3",
        "EVAL": "0", "MODEL_ARGS": "--set model.kwargs.depth=3 --set model.kwargs.features=8 "
        "--set train.tensorboard=false",
    }  # fmt: skip
    script = str(_REPO / "scripts" / "train_gpu.sh")
    out = tmp_path / "runs"
    result = subprocess.run(
        ["bash", script, str(out), "6steps", "dncnn"], cwd=_REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "for 6 steps each" in result.stdout and "budget 6 steps each" in result.stdout
    summary = json.loads((out / "dncnn" / "summary.json").read_text())
    assert summary["steps"] == 6
    bad = subprocess.run(
        ["bash", script, str(out), "5min", "dncnn"], cwd=_REPO, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "BUDGET must be minutes" in bad.stderr
