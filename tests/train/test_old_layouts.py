"""Configs and checkpoints of the layout before the [task] table still load and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import n3net.train.loop as loop
from n3net.train.checkpoint import atomic_save, load_checkpoint
from n3net.train.config import RunConfig


def _to_version_1(path: Path) -> None:
    """Rewrite a checkpoint as the first layout: data.sigma, best["psnr"], last_val_psnr."""
    state = torch.load(path, weights_only=True)
    config = state["config"]
    config["data"]["sigma"] = config.pop("task")["sigma"]
    best = state["best"]
    state.update(
        version=1,
        best={"psnr": best["value"], "step": best["step"], "model": best["model"]},
        last_val_psnr=state.pop("last_val"),
    )
    atomic_save(state, path)


def test_version_1_checkpoint_resumes_exactly(make_config: Any, killed_after: Any) -> None:
    sections = {"task": {"sigma": 30.0}, "train": {"ckpt_every": 6}}
    straight = make_config("straight", **sections)
    loop.train(straight)
    old = make_config("old", **sections)
    killed_after(old, 7, RuntimeError)
    last = Path(old.train.out_dir) / "last.pt"
    _to_version_1(last)
    assert torch.load(last, weights_only=True)["config"]["data"]["sigma"] == 30.0

    state = load_checkpoint(last)
    assert RunConfig.from_dict(state["config"]).task.sigma == 30.0
    assert state["step"] == 6 and state["best"]["value"] is not None
    assert loop.train(old, resume="auto").steps == 12
    a = load_checkpoint(Path(straight.train.out_dir) / "last.pt")
    b = load_checkpoint(last)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["best"]["value"] == b["best"]["value"] and a["last_val"] == b["last_val"]

    other = make_config("other", task={"sigma": 25.0}, train={"ckpt_every": 6})
    _to_version_1(last)
    with pytest.raises(ValueError, match="resume with the same task options"):
        loop.train(other, resume=str(last))


def test_version_1_config_dict() -> None:
    values = RunConfig().to_dict()
    values["data"]["sigma"] = values.pop("task")["sigma"] + 5
    config = RunConfig.from_dict(values)
    assert config.task.name == "denoise" and config.task.sigma == 30.0
