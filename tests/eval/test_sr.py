"""The super-resolution protocol: 8-bit Y-PSNR with a shave, SSIM, a folder run, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.cli.main import main
from n3net.eval.sr import evaluate_upscaler, load_sr_pair, quantise, sr_psnr, sr_ssim

pytest.importorskip("resize_right")
pytest.importorskip("skimage")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(26), np.arange(31)) * 4 % 256
    Image.fromarray(ramp.astype(np.uint8)).save(folder / "a.png")
    rgb = np.stack([ramp, ramp.T[:26, :26].repeat(2, 1)[:, :31], ramp[::-1]], -1)
    Image.fromarray((rgb + rng.integers(0, 20, rgb.shape)).clip(0, 255).astype(np.uint8)).save(
        folder / "b.png"
    )
    return folder


def test_psnr_by_hand() -> None:
    reference = torch.full((1, 1, 20, 20), 100 / 255)
    output = reference.clone()
    output[..., 9, 9] += 10 / 255  # inside the kept 16 x 16
    output[..., 0, :] = 0.0  # in the shaved border: ignored
    assert sr_psnr(output, reference, shave=2) == pytest.approx(10 * np.log10(255**2 / (100 / 256)))
    assert sr_ssim(reference, reference, shave=2) == pytest.approx(1.0)
    assert quantise(torch.tensor([0.5 / 255, 1.5 / 255])).mul(255).tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="output must have the reference's shape"):
        sr_psnr(output[..., :8], reference, shave=2)


def test_pairs_and_folder_run(folder: Path) -> None:
    lr, hr = load_sr_pair(folder / "a.png", 3)
    assert lr.shape == (1, 1, 8, 10) and hr.shape == (1, 1, 24, 30)
    assert torch.allclose(hr * 255, (hr * 255).round(), atol=1e-4)  # grey: its own luminance
    from n3net.inference import Upscaler

    result = evaluate_upscaler(Upscaler("bicubic", 3).upscale_y, folder, 3, progress=False)
    assert [row["name"] for row in result["rows"]] == ["a.png", "b.png"]
    assert result["summary"]["n_images"] == 2 and 15 < result["summary"]["mean_psnr"] < 60


def test_cli_json_shape(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "r.json"
    argv = ["evaluate", "--task", "sr", "--model", "bicubic", "--scale", "2", "4"]
    assert main([*argv, "--data", str(folder), "--json", str(target)]) == 0
    document = json.loads(target.read_text())
    assert document["settings"]["scales"] == [2, 4] and document["settings"]["task"] == "sr"
    results = document["results"]
    assert [(r["model"], r["scale"]) for r in results] == [("bicubic", 2), ("bicubic", 4)]
    assert set(results[0]["summary"]) == {"mean_psnr", "mean_ssim", "n_images"}
    assert set(results[0]["rows"][0]) == {"name", "psnr", "ssim", "seconds"}
    assert "Y-PSNR" in capsys.readouterr().out
    assert main([*argv[:-3], "--scale", "5", "--data", str(folder)]) == 2
    assert "--scale must be among 2, 3, 4, got 5" in capsys.readouterr().err
