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
