"""The committed checkpoints of the long super-resolution runs load safely and match resume.sh.

They live in ``checkpoints/sr/`` while the runs train in pieces; this file goes with that folder
once the weights ship.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[2] / "checkpoints" / "sr"
RUNS = sorted(path.parent.name for path in ROOT.glob("*/last.pt"))


def test_resume_script_starts_both_runs_alike() -> None:
    assert set(RUNS) <= {"vdsr", "n3net-sr"}
    script = (ROOT / "resume.sh").read_text()
    for flag in ("--task sr", "--batch-size 8", "--max-steps 2500", "--seed 0",
                 '--amp "$amp"', "native_bf16", "vdsr) model=(--arch vdsr)",
                 "n3net-sr) model=(--arch n3net-sr)"):  # fmt: skip
        assert flag in script


@pytest.mark.parametrize("run", RUNS)
def test_checkpoint_matches_resume_script(run: str) -> None:
    state = load_checkpoint(ROOT / run / "last.pt")  # weights_only=True
    config = RunConfig.from_dict(state["config"])
    assert (config.task.name, config.model.arch, config.model.kwargs) == ("sr", run, {})
    assert config.data.preset == "budget" and config.task.scales == [2, 3, 4]
    train = config.train
    assert (train.batch_size, train.max_steps, train.seed) == (8, 2500, 0)
    # bf16 + channels-last where the CPU computes bf16 natively, float32 elsewhere (resume.sh)
    assert (train.amp, train.channels_last) in {("bf16", True), ("none", False)}
    assert train.lr_hold == 0.3
    with (ROOT / run / "log.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert rows and int(rows[-1]["step"]) <= state["step"]
