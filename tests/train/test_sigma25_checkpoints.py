"""The committed checkpoints of the long sigma = 25 runs load safely and match resume.sh.

They live in ``checkpoints/sigma25/`` while the runs train in pieces; this file goes with
that folder once the weights ship.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[2] / "checkpoints" / "sigma25"
RUNS = sorted(path.parent.name for path in ROOT.glob("*/last.pt"))
# run name -> (architecture, loss scale), as resume.sh starts them
EXPECTED = {
    "n3net-ls800": ("n3net", 800.0),
    "n3net-ls1": ("n3net", 1.0),
    "dncnn-ls800": ("dncnn", 800.0),
}


def test_the_runs_are_committed() -> None:
    assert RUNS and set(RUNS) <= set(EXPECTED)


@pytest.mark.parametrize("run", RUNS)
def test_checkpoint_matches_resume_script(run: str) -> None:
    state = load_checkpoint(ROOT / run / "last.pt")  # weights_only=True
    config = RunConfig.from_dict(state["config"])
    assert (config.model.arch, config.task.loss_scale) == EXPECTED[run]
    train = config.train
    assert (train.batch_size, train.max_steps, train.lr_hold, train.seed) == (8, 40000, 0.5, 0)
    # bf16 + channels-last where the CPU computes bf16 natively, float32 elsewhere (resume.sh)
    assert (train.amp, train.channels_last) in {("bf16", True), ("none", False)}
    assert train.weight_decay == 1e-4
    script = (ROOT / "resume.sh").read_text()
    for flag in ("--batch-size 8", "--max-steps 40000", "train.lr_hold=0.5", "--seed 0",
                 '--amp "$amp"', "native_bf16", "--sigma 25"):  # fmt: skip
        assert flag in script
    with (ROOT / run / "log.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert rows and int(rows[-1]["step"]) <= state["step"]
