"""Checkpoints committed for a run that spans sessions load safely and can resume."""

from pathlib import Path

import pytest

from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
CHECKPOINTS = sorted(ROOT.glob("*/*/last.pt")) if ROOT.is_dir() else []


@pytest.mark.skipif(not CHECKPOINTS, reason="no run in progress is committed")
@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.parent.name)
def test_committed_checkpoint_resumes(path: Path) -> None:
    state = load_checkpoint(path)  # weights_only: a file can never run code
    config = RunConfig.from_dict(state["config"])
    assert config.model.arch == path.parent.name
    assert state["step"] > 0
    budget = config.train.max_minutes
    assert budget is not None and 0 < state["elapsed_s"] < budget * 60, "already finished?"
    assert (path.parent / "log.csv").is_file()
