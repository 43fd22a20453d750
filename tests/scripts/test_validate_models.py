"""scripts/validate_models.py: a model scores on a run's validation images as the run scored it."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import n3net.train.loop as loop
from n3net.train.config import RunConfig

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
spec = importlib.util.spec_from_file_location("validate_models", SCRIPTS / "validate_models.py")
assert spec is not None and spec.loader is not None
validate_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validate_models)


def _run(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "imgs"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(6):
        image = rng.integers(0, 256, (20 + index, 24), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"g{index}.png")
    config = RunConfig.from_dict({
        "model": {"arch": "dncnn", "kwargs": {"depth": 3, "features": 8}},
        "data": {"root": str(tmp_path / "data"), "train_dirs": ["imgs"], "val_images": 2,
                 "crop_size": 16, "crops_per_image": 2},
        "train": {"batch_size": 2, "max_steps": 4, "val_every": 4, "log_every": 2,
                  "ckpt_every": 0, "ckpt_minutes": 0, "device": "cpu", "tensorboard": False,
                  "progress": "none", "out_dir": str(tmp_path / "run")},
    })  # fmt: skip
    loop.train(config)
    return tmp_path / "run"


def test_scores_as_the_run_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    with (run / "log.csv").open() as file:
        logged = [float(row["val_psnr"]) for row in csv.DictReader(file) if row["val_psnr"]]
    capsys.readouterr()
    model = run / "model.safetensors"
    assert validate_models.main([str(run / "config.json"), str(model)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{model}: validation PSNR ") and line.endswith(" dB")
    assert float(line.split()[-2]) == pytest.approx(logged[-1], abs=1e-3)


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_models.main([str(tmp_path / "missing.json"), "x"]) == 2
    assert "not found" in capsys.readouterr().err
    run = _run(tmp_path)
    values = json.loads((run / "config.json").read_text())
    values["data"]["val_images"] = 0
    (tmp_path / "noval.json").write_text(json.dumps(values))
    assert validate_models.main([str(tmp_path / "noval.json"), "x"]) == 2
    assert "no validation images" in capsys.readouterr().err
