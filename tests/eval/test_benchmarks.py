"""Tests for n3net.eval.benchmarks: the authors' protocol, summary math and the result schema."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from n3net.data.protocol import iter_protocol, load_gray_protocol
from n3net.eval.benchmarks import ROW_KEYS, SUMMARY_KEYS, evaluate_denoiser, summarize
from n3net.eval.metrics import psnr, ssim


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three tiny images, written out of sorted order; one RGB (converted to grey)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(data / "c.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / "a.png")
    Image.fromarray(rng.integers(0, 256, (18, 22), dtype=np.uint8)).save(data / "b.png")
    return data


class _Recorder:
    """A stand-in denoiser that returns its input and remembers it."""

    def __init__(self) -> None:
        self.seen: list[Tensor] = []

    def __call__(self, noisy: Tensor) -> Tensor:
        self.seen.append(noisy.detach().cpu().clone())
        return noisy


def test_noise_is_the_protocol_sequence(folder: Path) -> None:
    recorder = _Recorder()
    result = evaluate_denoiser(recorder, folder, 25, seed=1234, progress=False)
    expected = list(iter_protocol(folder, 25, seed=1234))
    assert [row["name"] for row in result["rows"]] == ["a.png", "b.png", "c.png"]
    assert [name for name, _, _ in expected] == ["a.png", "b.png", "c.png"]
    for seen, (_, _, noisy) in zip(recorder.seen, expected, strict=True):
        assert seen.shape == noisy.shape and seen.dtype == torch.float32
        assert torch.equal(seen, noisy)


def test_noise_is_drawn_by_hand_as_the_authors_did(folder: Path) -> None:
    recorder = _Recorder()
    evaluate_denoiser(recorder, folder, 50, seed=7, progress=False)
    torch.manual_seed(7)
    for path, seen in zip(sorted(folder.iterdir()), recorder.seen, strict=True):
        x = load_gray_protocol(path)
        noise = torch.zeros_like(x).normal_(0, 1) * 50 / 255
        assert torch.equal(seen, x + noise)


def test_denoiser_drawing_random_numbers_does_not_shift_the_noise(folder: Path) -> None:
    recorder = _Recorder()

    def noisy_consumer(noisy: Tensor) -> Tensor:
        torch.randn(1000)  # a stochastic denoiser must not change the next image's noise
        return recorder(noisy)

    evaluate_denoiser(noisy_consumer, folder, 25, progress=False)
    for seen, (_, _, noisy) in zip(recorder.seen, iter_protocol(folder, 25), strict=True):
        assert torch.equal(seen, noisy)


def test_noise_does_not_depend_on_the_device(folder: Path, device: torch.device) -> None:
    recorder = _Recorder()
    result = evaluate_denoiser(recorder, folder, 25, progress=False, device=device)
    for seen, (_, _, noisy) in zip(recorder.seen, iter_protocol(folder, 25), strict=True):
        assert torch.equal(seen, noisy)
    reference = evaluate_denoiser(lambda y: y, folder, 25, progress=False)
    for row, ref in zip(result["rows"], reference["rows"], strict=True):
        assert row["psnr"] == pytest.approx(ref["psnr"], abs=1e-9)


def test_rows_and_summary_of_the_identity(folder: Path) -> None:
    result = evaluate_denoiser(lambda y: y, folder, 25, progress=False)
    assert set(result) == {"summary", "rows"}
    assert tuple(result["summary"]) == SUMMARY_KEYS
    for row, (name, clean, noisy) in zip(result["rows"], iter_protocol(folder, 25), strict=True):
        assert tuple(row) == ROW_KEYS
        assert row["name"] == name
        assert row["psnr"] == pytest.approx(psnr(noisy, clean), abs=1e-12)
        assert row["psnr_clipped"] == pytest.approx(psnr(noisy.clamp(0, 1), clean), abs=1e-12)
        assert row["psnr_clipped"] > row["psnr"]  # clipping noise towards [0, 1] helps
        assert row["ssim"] == pytest.approx(ssim(noisy.clamp(0, 1), clean), abs=1e-12)
        assert row["seconds"] >= 0
    summary = result["summary"]
    assert summary["n_images"] == 3
    for key, column in (("mean_psnr", "psnr"), ("mean_psnr_clipped", "psnr_clipped")):
        assert summary[key] == pytest.approx(np.mean([r[column] for r in result["rows"]]))
    assert summary["mean_ssim"] == pytest.approx(np.mean([r["ssim"] for r in result["rows"]]))
    json.dumps(result)  # plain numbers and strings only


def test_summarize_by_hand() -> None:
    rows = [
        {"name": "a", "psnr": 30.0, "psnr_clipped": 30.5, "ssim": 0.8, "seconds": 1.0},
        {"name": "b", "psnr": 20.0, "psnr_clipped": 20.1, "ssim": 0.6, "seconds": 2.0},
    ]
    assert summarize(rows) == pytest.approx(
        {"mean_psnr": 25.0, "mean_psnr_clipped": 25.3, "mean_ssim": 0.7, "n_images": 2}
    )
    empty = summarize([])
    assert empty["n_images"] == 0 and math.isnan(empty["mean_psnr"])


def test_perfect_denoiser_reaches_the_psnr_ceiling(folder: Path) -> None:
    clean = {path.name: load_gray_protocol(path) for path in folder.iterdir()}
    names = iter(sorted(clean))
    result = evaluate_denoiser(lambda y: clean[next(names)], folder, 25, progress=False)
    assert result["summary"]["mean_psnr"] == pytest.approx(100.0)  # 10 log10(1 / 1e-10)
    assert result["summary"]["mean_ssim"] == pytest.approx(1.0)


def test_modules_run_in_eval_mode(folder: Path) -> None:
    model = nn.Sequential(nn.Dropout(0.5))
    model.train()
    result = evaluate_denoiser(model, folder, 25, progress=False)
    identity = evaluate_denoiser(lambda y: y, folder, 25, progress=False)
    assert not model.training
    assert result["summary"] == identity["summary"] | {"n_images": 3}


def test_gradients_are_off(folder: Path) -> None:
    flags = []

    def probe(noisy: Tensor) -> Tensor:
        flags.append(torch.is_grad_enabled())
        return noisy

    evaluate_denoiser(probe, folder, 25, progress=False)
    assert flags == [False, False, False]


def test_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        evaluate_denoiser(lambda y: y, tmp_path / "missing", 25, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        evaluate_denoiser(lambda y: y, empty, 25, progress=False)
    for sigma in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="sigma must be"):
            evaluate_denoiser(lambda y: y, folder, sigma, progress=False)
    with pytest.raises(ValueError, match="shape"):
        evaluate_denoiser(lambda y: y[..., 1:], folder, 25, progress=False)
