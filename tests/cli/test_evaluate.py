"""In-process tests of `n3net evaluate`: results, JSON schema, tables and one-line errors."""

from __future__ import annotations

import errno
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.cli.main import main
from n3net.eval import benchmarks
from n3net.eval.benchmarks import evaluate_denoiser
from n3net.models import _registry, create_model, load_model, save_model


def _save_dncnn(path: Path, sigma: str | None = "25") -> Path:
    torch.manual_seed(0)
    model = create_model("dncnn", depth=3, features=8)
    return save_model(model, path, {"sigma": sigma} if sigma else None)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name in ("b.png", "a.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (20, 18), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return _save_dncnn(tmp_path / "tiny25.safetensors")


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The error output's lines that are not progress bars; asserts there is exactly one."""
    lines = [line for line in capsys.readouterr().err.splitlines() if "n3net: error:" in line]
    assert len(lines) == 1, lines
    return lines[0][lines[0].index("n3net: error:") :]


def test_json_schema_and_values(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = _save_dncnn(tmp_path / "plain.safetensors", sigma=None)  # no sigma: any sigma is fine
    out = tmp_path / "results.json"
    argv = ["evaluate", "--model", str(plain), "nlm", "--sigma", "25", "50", "--data", str(data)]
    assert main([*argv, "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "a.png" in stdout and "mean over images" in stdout

    document = json.loads(out.read_text())
    assert set(document) == {"settings", "results"}
    assert document["settings"]["seed"] == 1234 and document["settings"]["sigmas"] == [25, 50]
    results = document["results"]
    assert [(r["model"], r["sigma"]) for r in results] == [
        (str(plain), 25),
        (str(plain), 50),
        ("nlm", 25),
        ("nlm", 50),
    ]
    for result in results:
        assert list(result) == ["model", "data", "sigma", "summary", "rows"]
        assert result["data"] == str(data)
        assert list(result["summary"]) == [
            "mean_psnr",
            "mean_psnr_clipped",
            "mean_ssim",
            "n_images",
        ]
        assert result["summary"]["n_images"] == 3
        assert [row["name"] for row in result["rows"]] == ["a.png", "b.png", "c.png"]
        for row in result["rows"]:
            assert list(row) == ["name", "psnr", "psnr_clipped", "ssim", "seconds"]
        mean = np.mean([row["psnr"] for row in result["rows"]])
        assert result["summary"]["mean_psnr"] == pytest.approx(mean)

    expected = evaluate_denoiser(load_model(plain), data, 50, progress=False)
    assert results[1]["summary"]["mean_psnr"] == pytest.approx(expected["summary"]["mean_psnr"])
    assert results[3]["summary"]["mean_psnr"] > results[1]["summary"]["mean_psnr"]  # nlm denoises


def test_one_result_per_model_data_sigma(data: Path, model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = ["evaluate", "--model", str(model_file), str(model_file), "--sigma", "25", "25"]
    assert main([*argv, "--data", str(data), str(data), "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["results"]) == 1


def test_never_overwrites_json_without_flag(
    data: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    out.write_text("keep me")
    argv = ["evaluate", "--model", str(model_file), "--data", str(data), "--json", str(out)]
    assert main(argv) == 2
    assert "exists; pass --overwrite" in _error_line(capsys)
    assert out.read_text() == "keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(out.read_text())["results"][0]["summary"]["n_images"] == 3


def test_default_model_per_sigma(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(_registry, "_weights_dir", lambda: weights)
    assert main(["evaluate", "--sigma", "25", "--data", str(data)]) == 2
    assert "no trained weights are shipped yet" in _error_line(capsys)

    _save_dncnn(weights / "dn-gray-sigma25.safetensors", "25")
    _save_dncnn(weights / "dn-gray-sigma50.safetensors", "50")
    out = tmp_path / "r.json"
    argv = ["evaluate", "--sigma", "25", "50", "--data", str(data), "--json", str(out)]
    assert main(argv) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["model"], r["sigma"]) for r in results] == [
        ("dn-gray-sigma25", 25),
        ("dn-gray-sigma50", 50),
    ]
    capsys.readouterr()
    assert main(["evaluate", "--sigma", "70", "--data", str(data)]) == 2
    assert "no trained model for sigma 70; trained sigmas: 25, 50" in _error_line(capsys)


def test_sigma_mismatch_needs_force(
    data: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model", str(model_file), "--sigma", "50", "--data", str(data)]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "trained for sigma 25, not 50" in line and "--force" in line
    assert main([*argv, "--force"]) == 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown-model", "unknown model 'no-such-model'"),
        ("missing-file", "model file not found"),
        ("missing-data", "data folder not found"),
        ("empty-data", "no images"),
        ("sigma", "--sigma must be > 0"),
        ("colour", "the benchmark protocol is grey"),
        ("no-eval-extra", "needs the 'skimage' package: pip install 'n3net[eval]'"),
        ("bm3d-without-extra", "needs the 'bm3d' package: pip install 'n3net[eval]'"),
        ("read-only-json", "cannot write into"),
        ("existing-json", "exists; pass --overwrite"),
    ],
)
def test_errors_are_one_line(
    case: str,
    message: str,
    data: Path,
    model_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, folder, sigma = str(model_file), str(data), "25"
    target = tmp_path / "results.json"
    calls: list[int] = []
    monkeypatch.setattr(benchmarks, "evaluate_denoiser", lambda *a, **k: calls.append(1))
    if case == "unknown-model":
        model = "no-such-model"
    elif case == "missing-file":
        model = str(tmp_path / "missing.safetensors")
    elif case == "missing-data":
        folder = str(tmp_path / "missing")
    elif case == "empty-data":
        (tmp_path / "empty").mkdir()
        folder = str(tmp_path / "empty")
    elif case == "sigma":
        sigma = "0"
    elif case == "colour":
        colour = create_model("dncnn", channels=3, depth=3, features=8)
        model = str(save_model(colour, tmp_path / "rgb.safetensors"))
    elif case == "no-eval-extra":
        monkeypatch.setitem(sys.modules, "skimage.metrics", None)  # import -> ImportError
    elif case == "bm3d-without-extra":
        monkeypatch.setitem(sys.modules, "bm3d", None)
        model = "bm3d"
    elif case == "read-only-json":
        monkeypatch.setattr(tempfile, "TemporaryFile", _read_only_filesystem)
    elif case == "existing-json":
        target.write_text("keep me")
    argv = ["evaluate", "--model", model, "--sigma", sigma, "--data", folder]
    assert main([*argv, "--json", str(target)]) == 2
    assert message in _error_line(capsys)
    assert calls == []  # refused before any work
    assert not target.exists() or target.read_text() == "keep me"


def _read_only_filesystem(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.EROFS, "Read-only file system")


def test_data_name_resolves_under_n3net_data(
    data: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(data.parent.parent)  # "tiny" is not a folder here
    monkeypatch.setenv("N3NET_DATA", str(data.parent))
    assert main(["evaluate", "--model", str(model_file), "--data", "tiny"]) == 0
    assert f"on {data}," in capsys.readouterr().out
    monkeypatch.setenv("N3NET_DATA", str(data))
    assert main(["evaluate", "--model", str(model_file), "--data", "tiny"]) == 2
    assert "data folder not found: 'tiny' nor in $N3NET_DATA" in _error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_when_absent(data: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evaluate", "--model", str(model_file), "--data", str(data), "--device", "cuda"]
    assert main(argv) == 2
    assert "CUDA is not available" in _error_line(capsys)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data: Path, model_file: Path, tmp_path: Path) -> None:
    means = []
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        argv = ["evaluate", "--model", str(model_file), "--data", str(data), "--device", device]
        assert main([*argv, "--json", str(out)]) == 0
        means.append(json.loads(out.read_text())["results"][0]["summary"]["mean_psnr"])
    assert means[0] == pytest.approx(means[1], abs=1e-4)
