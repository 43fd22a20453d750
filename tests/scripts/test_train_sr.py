"""scripts/train_sr.sh end to end at a tiny size: two trainings, evaluations, tables, packing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("resize_right")
pytest.importorskip("skimage")

_REPO = Path(__file__).resolve().parents[2]
_FOLDERS = {"t91": 2, "bsd200": 2, "bsds500_test": 2, "set5": 1, "set14": 1, "b100": 1}


def _data(root: Path) -> Path:
    """Tiny stand-ins for the training, validation and test folders (RGB, one grey)."""
    rng = np.random.default_rng(0)
    for name, count in _FOLDERS.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            height = 48 + 4 * index
            ramp = np.add.outer(np.arange(height), np.arange(50)) * 3 % 256
            image = ((ramp[..., None] + rng.integers(0, 30, (height, 50, 3))) % 256).astype(
                np.uint8
            )
            Image.fromarray(image[..., 0] if name == "set14" else image).save(
                root / name / f"im{index}.png"
            )
    return root


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.slow
def test_train_sr_end_to_end(tmp_path: Path) -> None:
    data, out, pack = _data(tmp_path / "data"), tmp_path / "out", tmp_path / "sr.tar"
    command = [
        "bash", str(_REPO / "scripts" / "train_sr.sh"), str(out), "2", "cpu",
        "--data", str(data), "--batch-size", "2", "--pack", str(pack),
        "--set", "data.crop_size=40", "--set", "task.val_size=24", "--set", "data.val_images=1",
        "--set", "model.kwargs.depth=3", "--set", "model.kwargs.features=4",
    ]  # fmt: skip
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for arch in ("vdsr", "n3net-sr"):
        for name in ("model.safetensors", "log.csv", "summary.json", "train.log", "last.pt"):
            assert (out / arch / name).is_file(), (arch, name)
        assert json.loads((out / arch / "summary.json").read_text())["steps"] == 2
    for model in ("bicubic", "vdsr", "n3net-sr"):
        results = json.loads((out / "eval" / f"{model}.json").read_text())["results"]
        assert {(Path(r["data"]).name, r["scale"]) for r in results} == {
            (d, s) for d in ("set5", "set14", "b100") for s in (2, 3, 4)
        }
    table = (out / "results.md").read_text()
    assert "| bicubic | Set5 (1) |" in table and "(37.53 / 0.9587)" in table
    assert "N3Net-SR − VDSR" in table and "| Set5, paper | +0.04 | +0.18 | +0.15 |" in table
    assert "| Set5, paper |" in result.stdout
    with tarfile.open(pack) as tar:
        names = tar.getnames()
    assert "out/vdsr/model.safetensors" in names and "out/eval/n3net-sr.json" in names
    assert not [name for name in names if name.endswith(".pt")]
    # A second call finds everything done and only redraws the tables.
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already trained") == 2 and "evaluate vdsr" not in again.stdout
    # Another step count in the same folder is refused.
    other = [*command[:3], "3", *command[4:]]
    refused = subprocess.run(other, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "not 3" in refused.stderr


def test_stage_writes_the_training_luminance(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_sr", _REPO / "scripts" / "train_sr.py")
    assert spec is not None and spec.loader is not None
    train_sr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_sr)
    from n3net.eval.sr import load_luminance

    data = _data(tmp_path / "data")
    staged = tmp_path / "staged"
    assert train_sr.stage(staged, data, val_images=1) == 0
    original = load_luminance(data / "t91" / "im1.png").mul(255).round()
    assert np.array_equal(load_luminance(staged / "t91" / "im1.png").mul(255).numpy(), original)
    assert len(list((staged / "bsds500_test").iterdir())) == 1
    assert (staged / "set5" / "im0.png").read_bytes() == (data / "set5" / "im0.png").read_bytes()
    assert (staged / "pylib" / "resize_right" / "__init__.py").is_file()
