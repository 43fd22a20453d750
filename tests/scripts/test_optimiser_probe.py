"""scripts/optimiser_probe.py: the first steps of a run, watched from the inside."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
spec = importlib.util.spec_from_file_location("optimiser_probe", SCRIPTS / "optimiser_probe.py")
assert spec is not None and spec.loader is not None
optimiser_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(optimiser_probe)

pytest.importorskip("resize_right")


def _data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("t91", "bsd200"):
        (root / name).mkdir(parents=True)
        for index in range(2):
            ramp = np.add.outer(np.arange(40), np.arange(44)) * 3 % 256
            noise = rng.integers(0, 40, (40, 44))
            Image.fromarray(((ramp + noise) % 256).astype(np.uint8)).save(
                root / name / f"{index}.png"
            )
    return root


TINY = ["--set", "data.crop_size=24", "--set", "model.kwargs.depth=3",
        "--set", "model.kwargs.features=4", "--batch-size", "2"]  # fmt: skip


@pytest.mark.parametrize("preset", ["paper", "budget"])
def test_reports_the_steps_it_was_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    preset: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("N3NET_DATA", str(_data(tmp_path / "data")))
    argv = [
        "--preset",
        preset,
        "--steps",
        "5",
        "--every",
        "2",
        "--set",
        "data.val_dir=''",
        "--set",
        "data.val_images=1",
        *TINY,
    ]
    assert optimiser_probe.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "vdsr, task sr, " + ("SGD at lr 0.1" if preset == "paper" else "Adam")
    )
    rows = [line.split() for line in lines[1:]]
    assert [int(row[1]) for row in rows] == [0, 2, 4]  # every 2 steps and the last one
    for row in rows:
        values = dict(zip(row[2::2], map(float, row[3::2]), strict=True))
        assert set(values) == {"loss", "clipped", "residual", "target", "alive", "moved"}
        assert 0 <= values["clipped"] <= 1 and 0 <= values["alive"] <= 1
        assert values["loss"] > 0 and values["target"] > 0
    # SGD's clip bounds elements; Adam has no clip here
    clipped = [float(row[5]) for row in rows]
    assert (max(clipped) > 0) if preset == "paper" else clipped == [0.0, 0.0, 0.0]
    assert float(rows[-1][-1]) > 0  # the weights moved


def test_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("N3NET_DATA", str(tmp_path / "missing"))
    assert optimiser_probe.main(TINY) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit):
        optimiser_probe.main(["--steps", "0"])
