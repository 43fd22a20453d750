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


def test_ships_denoising_weights_with_a_model_card(tmp_path: Path) -> None:
    run = tmp_path / "n3net-run"
    run.mkdir()
    metadata = {"task": "denoise", "sigma": "25", "steps": "40000", "batch_size": "8",
                "minutes": "1200", "hardware": "CPU test", "val_psnr": "29.100",
                "loss": "800 x MSE", "protocol": "preset paper, batch 8 of 80x80, amp bf16",
                "recipe": "Adam (betas 0.9, 0.999), lr 0.001 held, seed 0",
                "weights": "best validation (step 39750)"}  # fmt: skip
    model = create_model("n3net", depth=2, features=8, embed_features=8, n_blocks=2)
    save_model(model, run / "model.safetensors", metadata)
    rows = [
        {**_result(str(run), f"/d/{data}", 25, psnr), "summary": {"mean_psnr": psnr,
                                                                 "mean_ssim": 0.8}}
        for data, psnr in (("set12", 30.6), ("bsd68", 29.3), ("urban100", 30.2))
    ]  # fmt: skip
    rows += [_result("runs/dncnn-partner/model.safetensors", "/d/bsd68", 25, 29.2)]
    rows += [_result("bm3d", "/d/set12", 25, 30.0), _result("bm3d", "/d/bsd68", 50, 25.0)]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"results": rows}))
    weights = tmp_path / "weights"
    weights.mkdir()
    argv = [str(run), "n3net-gray-sigma25", "--results", str(results), "--weights", str(weights)]
    assert ship_model.main(argv) == 0
    card = (weights / "n3net-gray-sigma25.md").read_text()
    assert card.startswith("# n3net-gray-sigma25") and "2 DnCNN blocks of depth 2" in card
    assert "loss 800 × MSE; Adam (betas 0.9, 0.999), lr 0.001 held, seed 0" in card
    assert "40,000 steps of batch 8 = 320,000 crops in 1200.0 minutes (20.00 h)" in card
    assert "12.5 % of it" in card  # of the authors' 2.56M crops
    header = next(line for line in card.splitlines() if line.startswith("| data | **this"))
    assert "dncnn-partner (this − it)" in header and "bm3d (this − it)" in header
    # this model, the partner, bm3d at sigma 25 only, then N3Net (paper), DnCNN, BM3D
    assert (
        "| BSD68, σ = 25 | **29.30** / 0.800 | 29.20 (+0.10) | – | 29.30 | 29.23 | 28.57 |" in card
    )
    assert (
        "| Set12, σ = 25 | **30.60** / 0.800 | – | 30.00 (+0.60) | 30.55 | 30.44 | 29.97 |" in card
    )
    assert "| Urban100, σ = 25 | **30.20** / 0.800 | – | – | 30.19 | 29.97 | 29.70 |" in card
    assert ship_model.main(argv) == 2  # weights and card are kept unless --force


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


def _corr_result(model: str, map20: float, tiers: bool = True) -> dict:
    summary = {"map5": map20 / 4, "map10": map20 / 2, "map20": map20, "precision": 0.5,
               "recall": 0.75, "f1": 0.6, "n_pairs": 12}  # fmt: skip
    result = {"model": model, "data": "synthetic", "summary": summary}
    if tiers:
        result["tiers"] = {t: {**summary, "map20": map20 - i / 10}
                           for i, t in enumerate(("easy", "medium", "hard"))}  # fmt: skip
    return result


def test_ships_correspondence_weights_with_a_model_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "cnnet-n3-seed0"
    run.mkdir()
    metadata = {"task": "correspondences", "data": "synthetic", "points": "64", "steps": "11",
                "minutes": "0.20", "hardware": "CPU test", "val_map": "0.250",
                "train_data": "synthetic two-view pairs 0-7 of split seed 0",
                "protocol": "batch 2 pairs, class-balanced BCE", "batch_size": "2",
                "optimizer": "Adam (0.9, 0.999)"}  # fmt: skip
    model = create_model("cnnet-n3", channels=8, depth=3, n3_block=2, embed_features=8)
    save_model(model, run / "model.safetensors", metadata)
    results = tmp_path / "r.json"
    rows = [
        _corr_result(str(run), 0.5),
        _corr_result(str(run) + "+ransac", 0.625),
        _corr_result("runs/cnnet-seed0", 0.375),
        _corr_result("ransac", 0.25, tiers=False),
    ]
    settings = {"seed": 2, "pairs": 12, "points": 100}
    results.write_text(json.dumps({"settings": settings, "results": rows}))
    weights = tmp_path / "weights"
    weights.mkdir()
    argv = [str(run), "cnnet-n3-synth", "--results", str(results), "--weights", str(weights)]

    assert ship_model.main([*argv[:1], "cnnet-synth", *argv[2:]]) == 2  # named by its arch
    assert "are named cnnet-n3-synth, not cnnet-synth" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"settings": settings, "results": rows[2:]}))
    assert ship_model.main([*argv[:3], str(other), *argv[4:]]) == 2
    assert "no synthetic result" in capsys.readouterr().err

    assert ship_model.main(argv) == 0
    meta = model_metadata(weights / "cnnet-n3-synth.safetensors")
    assert meta["synthetic_map20"] == "0.5000" and meta["synthetic_hard_map20"] == "0.3000"
    assert (
        meta["synthetic_f1"] == "0.6000" and meta["test_split"] == "seed 2, 12 pairs of 100 matches"
    )
    card = (weights / "cnnet-n3-synth.md").read_text()
    assert card.startswith("# cnnet-n3-synth") and "the set N3 block, k = 3" in card
    assert "| data | synthetic two-view pairs 0-7 of split seed 0 |" in card
    assert "| budget | 11 steps in 0.20 minutes |" in card
    lines = card.splitlines()
    first = lines.index("| model | mAP@5 | mAP@10 | mAP@20 | easy | medium | hard | F1 |") + 2
    assert lines[first] == (
        "| **`cnnet-n3-synth`** | 0.125 | 0.250 | 0.500 | 0.500 | 0.400 | 0.300 | 0.600 |"
    )
    assert lines[first + 1].startswith("| **`cnnet-n3-synth+ransac`** | 0.156 |")
    assert lines[first + 2].startswith("| `runs/cnnet-seed0` | 0.094 | 0.188 | 0.375 |")
    assert lines[first + 3] == "| `ransac` | 0.062 | 0.125 | 0.250 | – | – | – | 0.600 |"
    assert "after 500,000 steps of batch 32 pairs" in card  # the authors' budget beside ours
    assert "these weights: 11 steps of batch 2 pairs of 64 matches, 0.0022 % of the steps" in card

    # --note appends a Markdown file to the card; a missing or empty note stops before any write.
    note = tmp_path / "note.md"
    assert ship_model.main([*argv, "--force", "--note", str(note)]) == 2
    assert "cannot read the note" in capsys.readouterr().err
    note.write_text("  \n")
    assert ship_model.main([*argv, "--force", "--note", str(note)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert (weights / "cnnet-n3-synth.md").read_text() == card
    note.write_text("## Where it stands\n\nBehind CNNet here.\n")
    assert ship_model.main([*argv, "--force", "--note", str(note)]) == 0
    noted = (weights / "cnnet-n3-synth.md").read_text()
    assert noted == card.rstrip("\n") + "\n\n## Where it stands\n\nBehind CNNet here.\n"

    # `n3net models` lists it under correspondence weights.
    from n3net.cli.main import main as cli

    monkeypatch.setattr("n3net.models._registry._weights_dir", lambda: weights)
    capsys.readouterr()
    assert cli(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("correspondence weights"))
    assert "cnnet-n3-synth" in lines[heading + 1]
    assert "synthetic test mAP@20 0.5000 (seed 2, 12 pairs of 100 matches)" in lines[heading + 1]
    assert cli(["models", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in document["pretrained_correspondences"]] == ["cnnet-n3-synth"]
    assert not document["pretrained"] and not document["pretrained_sr"]
