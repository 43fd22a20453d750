"""scripts/ship_model.py: a model file enters the package with its measured PSNR recorded."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from n3net.models import create_model, model_metadata, save_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ship_model.py"
spec = importlib.util.spec_from_file_location("ship_model", SCRIPT)
assert spec is not None and spec.loader is not None
ship_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ship_model)


def _result(model: str, data: str, sigma: float, psnr: float) -> dict:
    return {"model": model, "data": data, "sigma": sigma, "summary": {"mean_psnr": psnr}}


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    model = create_model("dncnn", depth=3, features=8)
    return save_model(model, tmp_path / "model.safetensors", {"sigma": "25", "steps": "7"})


def test_ships_with_measured_psnr(model_file: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    rows = [
        _result(str(model_file), "/d/set12", 25, 28.123456),
        _result(str(model_file), "/d/bsd68", 25, 27.5),
        _result(str(model_file), "/d/bsd68", 50, 20.0),  # another sigma: ignored
        _result("other.safetensors", "/d/urban100", 25, 1.0),  # another model: ignored
    ]
    results.write_text(json.dumps({"results": rows}))
    weights = tmp_path / "weights"
    weights.mkdir()
    argv = [str(model_file), "tiny-gray-sigma25", "--results", str(results)]
    assert ship_model.main([*argv, "--weights", str(weights)]) == 0
    shipped = weights / "tiny-gray-sigma25.safetensors"
    meta = model_metadata(shipped)
    assert meta["bsd68_psnr"] == "27.5000" and meta["set12_psnr"] == "28.1235"
    assert "urban100_psnr" not in meta and meta["steps"] == "7"
    original, copied = load_file(str(model_file)), load_file(str(shipped))
    assert original.keys() == copied.keys()
    assert all(torch.equal(original[k], copied[k]) for k in original)
    # nothing is replaced unless asked
    assert ship_model.main([*argv, "--weights", str(weights)]) == 2
    assert ship_model.main([*argv, "--weights", str(weights), "--force"]) == 0


def test_refuses_without_a_bsd68_result(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"results": [_result(str(model_file), "/d/set12", 25, 28.0)]}))
    argv = [str(model_file), "x", "--results", str(results), "--weights", str(tmp_path)]
    assert ship_model.main(argv) == 2
    assert "no BSD68 result" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert ship_model.main([str(model_file), "x", "--results", str(bad)]) == 2
    assert "not an n3net evaluate result file" in capsys.readouterr().err


def _sr_result(model: str, data: str, scale: int, psnr: float, ssim: float) -> dict:
    summary = {"mean_psnr": psnr, "mean_ssim": ssim, "n_images": 5}
    return {"model": model, "data": data, "scale": scale, "summary": summary}


@pytest.fixture
def sr_run(tmp_path: Path) -> Path:
    """A run folder of a tiny VDSR with the metadata `n3net train --task sr` writes."""
    run = tmp_path / "vdsr"
    run.mkdir()
    metadata = {"task": "sr", "scales": "2,3,4", "steps": "9", "minutes": "0.10",
                "hardware": "CPU test", "val_psnr": "30.000", "optimizer": "adam"}  # fmt: skip
    save_model(create_model("vdsr", depth=3, features=4), run / "model.safetensors", metadata)
    return run


def _sr_results(path: Path, model: str) -> Path:
    rows = [
        _sr_result(model, f"/d/{data}", scale, 30.0 + scale + index, 0.9)
        for index, data in enumerate(("set5", "set14", "b100"))
        for scale in (2, 3, 4)
    ]
    rows += [_sr_result("bicubic", "/d/set5", s, 28.0, 0.8) for s in (2, 3, 4)]
    path.write_text(json.dumps({"results": rows}))
    return path


def test_ships_sr_weights_with_a_model_card(
    sr_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    results = _sr_results(tmp_path / "r.json", str(sr_run / "model.safetensors"))
    weights = tmp_path / "weights"
    weights.mkdir()
    argv = [str(sr_run), "vdsr-x234", "--results", str(results), "--weights", str(weights)]
    assert ship_model.main(argv) == 0
    meta = model_metadata(weights / "vdsr-x234.safetensors")
    assert meta["set5_x2_psnr"] == "32.0000" and meta["b100_x4_psnr"] == "36.0000"
    assert meta["set14_x3_ssim"] == "0.9000" and meta["task"] == "sr"
    card = (weights / "vdsr-x234.md").read_text()
    assert card.startswith("# vdsr-x234") and "×2, ×3, ×4" in card
    assert "| vdsr-x234 | Set5 (5) | 32.00 / 0.9000 (37.53 / 0.9587) |" in card
    assert "| bicubic | Set5 (5) | 28.00 / 0.8000 (33.66 / 0.9299) |" in card
    assert "3 conv layers of 4 features" in card and "9 steps" in card
    assert ship_model.main(argv) == 2  # weights and card are kept unless --force
    assert ship_model.main([*argv, "--force"]) == 0
    assert "2-core test machine" not in (weights / "vdsr-x234.md").read_text()
    assert ship_model.main([*argv, "--force", "--hardware", "2-core test machine"]) == 0
    assert model_metadata(weights / "vdsr-x234.safetensors")["hardware"] == "2-core test machine"
    assert "| hardware | 2-core test machine (torch " in (weights / "vdsr-x234.md").read_text()
    assert ship_model.main([*argv, "--force", "--hardware", " "]) == 2

    # `n3net models` lists the shipped weights under super-resolution, with Set5 per scale.
    from n3net.cli.main import main as cli

    monkeypatch.setattr("n3net.models._registry._weights_dir", lambda: weights)
    capsys.readouterr()
    assert cli(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("super-resolution weights"))
    row = lines[heading + 1]
    assert "vdsr-x234" in row and "Set5 x2/x3/x4 32.0000 / 33.0000 / 34.0000 dB" in row
    assert "(default)" in row
    assert cli(["models", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in document["pretrained_sr"]] == ["vdsr-x234"]
    assert document["pretrained_sr"][0]["scales"] == ["2", "3", "4"] and not document["pretrained"]

    # Super-resolution names: bicubic and the shipped SR weights; an unknown one lists them.
    from n3net.inference.upscaler import Upscaler, sr_models

    assert sr_models() == ["bicubic", "vdsr-x234"]
    with pytest.raises(ValueError, match=r"'vdsr-x2' is unknown; .*a trained model \(vdsr-x234\)"):
        Upscaler("vdsr-x2", scale=2)


def test_sr_names_and_results_are_checked(
    sr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _sr_results(tmp_path / "r.json", "elsewhere.safetensors")
    common = ["--results", str(results), "--weights", str(tmp_path)]
    assert ship_model.main([str(sr_run), "my-vdsr", *common]) == 2
    assert "named vdsr-x234, not my-vdsr" in capsys.readouterr().err
    assert ship_model.main([str(sr_run), "vdsr-x234", *common]) == 2
    assert "no Set5 result" in capsys.readouterr().err
