"""`n3net evaluate --task correspondences`: tables, JSON, model files, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from n3net.cli.main import main
from n3net.data.correspondences import synthetic_pair
from n3net.data.synthetic import SyntheticConfig
from n3net.models import create_model, save_model

SYNTH = ["--data", "synthetic", "--seed", "1000", "--pairs", "3", "--points", "64"]


def _evaluate(*args: str) -> int:
    return main(["evaluate", "--task", "correspondences", *args])


def test_baselines_on_synthetic_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "r.json"
    assert _evaluate("--model", "oracle", "eight-point", *SYNTH, "--json", str(target)) == 0
    out = capsys.readouterr().out
    assert "oracle" in out and "mAP20" in out and "hard" in out
    document = json.loads(target.read_text())
    assert document["settings"]["task"] == "correspondences"
    assert document["settings"]["seed"] == 1000 and document["settings"]["pairs"] == 3
    results = document["results"]
    assert [(r["model"], r["data"]) for r in results] == [
        ("oracle", "synthetic"), ("eight-point", "synthetic"),
    ]  # fmt: skip
    summary = results[0]["summary"]
    assert {"map5", "map10", "map20", "precision", "recall", "f1"} <= set(summary)
    assert summary["f1"] == 1.0 and summary["n_pairs"] == 3
    assert set(results[0]["tiers"]) == {"easy", "medium", "hard"} and len(results[0]["rows"]) == 3
    assert _evaluate("--model", "oracle", *SYNTH, "--json", str(target)) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_trained_model_files_and_npz_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    k = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    for index in range(2):
        pair = synthetic_pair(5, index, SyntheticConfig(num_points=40 + 10 * index))
        x1, x2 = pair["xs"][:, :2] * 500 + [320, 240], pair["xs"][:, 2:] * 500 + [320, 240]
        np.savez(folder / f"p{index}.npz", x1=x1, x2=x2, K1=k, K2=k, R=pair["R"], t=pair["t"])
    run = tmp_path / "run"
    run.mkdir()
    save_model(create_model("cnnet", channels=8, depth=2), run / "model.safetensors")
    target = tmp_path / "r.json"
    argv = ["--model", str(run), str(run / "model.safetensors"), "--data", str(folder)]
    assert _evaluate(*argv, "--json", str(target)) == 0
    results = json.loads(target.read_text())["results"]
    assert len(results) == 2 and results[0]["data"] == str(folder)
    assert [row["pair"] for row in results[0]["rows"]] == ["p0.npz", "p1.npz"]
    assert results[0]["summary"] == results[1]["summary"]


@pytest.mark.parametrize(
    "args, message",
    [
        (SYNTH, "--task correspondences needs --model"),
        (["--model", "oracle", *SYNTH[:-4], "--pairs", "0"], "--pairs must be >= 1, got 0"),
        (["--model", "oracle", *SYNTH[:-2], "--points", "3"], "--points must be >= 8, got 3"),
        (
            ["--model", "no-such-model", *SYNTH],
            "unknown correspondence model 'no-such-model'; trained correspondence weights: "
            "cnnet-n3-synth, cnnet-synth",
        ),
        (["--model", "cnnet-real+ransac", *SYNTH], "baselines: eight-point, lmeds, oracle,"),
        (["--model", "bm3d", *SYNTH], "model bm3d is a denoise model, not a correspondences one"),
        (["--model", "cnnet", *SYNTH], "architecture 'cnnet' has no trained weights"),
        (["--model", "oracle", "--data", "no/such/folder"], "data folder not found"),
    ],
    ids=[
        "no-model",
        "pairs",
        "points",
        "unknown",
        "unknown+ransac",
        "denoiser",
        "untrained",
        "no-data",
    ],  # fmt: skip
)
def test_bad_inputs_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _evaluate(*args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_errors_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _evaluate("--model", str(empty), *SYNTH) == 2
    assert "has no model.safetensors" in capsys.readouterr().err
    assert _evaluate("--model", "oracle", "--data", str(empty)) == 2
    assert "no .npz pair files" in capsys.readouterr().err


def test_missing_opencv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert _evaluate("--model", "oracle", "ransac", *SYNTH) == 2
    err = capsys.readouterr().err
    assert "pip install 'n3net[geometry]'" in err and err.count("\n") == 1


def test_ransac_on_predicted_inliers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cv2")
    run = tmp_path / "run"
    run.mkdir()
    save_model(create_model("cnnet", channels=8, depth=2), run / "model.safetensors")
    target = tmp_path / "r.json"
    argv = ["--model", str(run), "oracle", "--ransac-on-predicted", *SYNTH, "--json", str(target)]
    assert _evaluate(*argv) == 0
    assert f"{run}+ransac" in capsys.readouterr().out
    results = json.loads(target.read_text())["results"]
    assert [r["model"] for r in results] == [str(run), f"{run}+ransac", "oracle"]
    assert "RANSAC" in json.loads(target.read_text())["settings"]["protocol"]
    # The suffix alone gives the same numbers.
    again = tmp_path / "again.json"
    assert _evaluate("--model", f"{run}+ransac", *SYNTH, "--json", str(again)) == 0
    assert json.loads(again.read_text())["results"][0]["summary"] == results[1]["summary"]


def test_ransac_suffix_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _evaluate("--model", "oracle+ransac", *SYNTH) == 2
    err = capsys.readouterr().err
    assert "+ransac follows a learned model, not the baseline oracle" in err
    assert err.count("\n") == 1
    run = tmp_path / "run"
    run.mkdir()
    save_model(create_model("cnnet", channels=8, depth=2), run / "model.safetensors")
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert _evaluate("--model", str(run), "--ransac-on-predicted", *SYNTH) == 2
    err = capsys.readouterr().err
    assert "pip install 'n3net[geometry]'" in err and err.count("\n") == 1


def test_ransac_variant_reuses_the_logits() -> None:
    import torch

    from n3net.cli._evaluate_correspondences import _share_forward
    from n3net.models.geometric import PredictedRansac

    calls = []

    class Counting(torch.nn.Module):
        def forward(self, xs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            calls.append(1)
            return xs[..., 0]

    net = Counting()
    models = {"run": net, "run+ransac": PredictedRansac(net), "oracle": object()}
    memos = _share_forward(models)
    assert len(memos) == 1 and models["run+ransac"].model is models["run"]
    xs = torch.randn(2, 16, 4)
    first = models["run"](xs, None)
    assert torch.equal(models["run"](xs.clone(), None), first) and len(calls) == 1
    models["run"](torch.randn(2, 16, 4), None)
    assert len(calls) == 2
    memos[0].clear()
    models["run"](xs, None)
    assert len(calls) == 3


def test_the_shipped_networks_evaluate_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both shipped names run end to end; each file records its measured test-split mAP@20."""
    from n3net.models import model_metadata

    target = tmp_path / "r.json"
    args = ["--model", "cnnet-synth", "cnnet-n3-synth", *SYNTH, "--json", str(target)]
    assert _evaluate(*args) == 0
    results = json.loads(target.read_text())["results"]
    assert [r["model"] for r in results] == ["cnnet-synth", "cnnet-n3-synth"]
    for result in results:
        assert 0.0 <= result["summary"]["map20"] <= 1.0 and result["summary"]["n_pairs"] == 3
        meta = model_metadata(result["model"])
        assert meta["test_split"].startswith("seed 2, 1000 pairs")
        assert 0.5 < float(meta["synthetic_map20"]) < 1.0
