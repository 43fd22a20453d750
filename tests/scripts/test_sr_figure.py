"""scripts/sr_figure.py: one crop of every model's output beside the original, one-line errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n3net.models import create_model, save_model

pytest.importorskip("resize_right")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sr_figure.py"
spec = importlib.util.spec_from_file_location("sr_figure", SCRIPT)
assert spec is not None and spec.loader is not None
sr_figure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sr_figure)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(37), np.arange(41)) * 5 % 256
    pixels = (ramp[..., None] + rng.integers(0, 40, (37, 41, 3))) % 256
    path = tmp_path / "photo.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_figure_of_bicubic_a_model_file_and_a_run_folder(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "vdsr"
    run.mkdir(parents=True)
    model = create_model("vdsr", depth=3, features=4)
    save_model(model, run / "model.safetensors", {"task": "sr", "scales": "2,3,4"})
    save_model(model, tmp_path / "n3net-sr-like.safetensors", {"task": "sr", "scales": "2,3,4"})
    out = tmp_path / "fig" / "crop.png"
    models = ["bicubic", str(run), str(tmp_path / "n3net-sr-like.safetensors")]
    argv = [str(image), "--scale", "3", "--box", "3", "6", "20", "15", "--models", *models]
    assert sr_figure.main([*argv, "-o", str(out)]) == 0
    assert Image.open(out).size[0] > 3 * Image.open(out).size[1]  # four panels side by side
    printed = capsys.readouterr().out
    assert "bicubic" in printed and "VDSR" in printed and "N3Net-SR" in printed
    # Grey images work too, with bicubic alone (the default while no weights ship).
    Image.open(image).convert("L").save(tmp_path / "grey.png")
    grey = [str(tmp_path / "grey.png"), "--scale", "2", "--box", "0", "0", "8", "8"]
    assert sr_figure.main([*grey, "--models", "bicubic", "-o", str(out)]) == 2  # exists
    assert "pass --force" in capsys.readouterr().err
    assert sr_figure.main([*grey, "--models", "bicubic", "-o", str(out), "--force"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--box", "35", "0", "8", "8"], "must lie inside the 39x36 image"),
        (["--box", "0", "0", "8", "8", "--models", "nope"], "model 'nope' is unknown"),
        (["--box", "0", "0", "8", "8", "--labels", "a", "b"], "--labels needs 1 titles"),
    ],
)
def test_errors_are_one_line(
    image: Path, tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    argv = [str(image), "--scale", "3", "-o", str(tmp_path / "f.png"), *extra]
    if "--models" not in extra:
        argv += ["--models", "bicubic"]
    assert sr_figure.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "f.png").exists()


def test_missing_matplotlib_is_one_line(
    image: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert sr_figure.main([str(image), "--scale", "2", "--box", "0", "0", "4", "4"]) == 2
    assert capsys.readouterr().err == (
        "error: sr_figure.py needs matplotlib (pip install 'n3net[train]')\n"
    )
