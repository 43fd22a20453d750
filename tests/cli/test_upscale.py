"""In-process tests of `n3net upscale`: sizes, bit depth, colour, alpha, folders, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.cli.main import main
from n3net.models import create_model, save_model

pytest.importorskip("resize_right")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (9, 8), dtype=np.uint8)).save(folder / "grey.png")
    return folder


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("n3net: error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_exactly_scale_times_the_input(
    images: Path, tmp_path: Path, scale: int, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "big.png"
    assert main(["upscale", str(images / "rgb.png"), "-o", str(out), "--scale", str(scale)]) == 0
    assert "upscaled 1 image(s)" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.size == (17 * scale, 13 * scale) and image.mode == "RGB"


def test_folder_grey_16_bit_alpha_and_model_file(images: Path, tmp_path: Path) -> None:
    grey16 = (np.random.default_rng(1).random((6, 5)) * 65535).astype(np.uint16)
    Image.fromarray(grey16).save(images / "deep.png")
    rgba = np.random.default_rng(2).integers(0, 256, (7, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(images / "alpha.png")
    torch.manual_seed(0)
    model = save_model(
        create_model("vdsr", depth=3, features=4), tmp_path / "v.safetensors", {"task": "sr"}
    )
    out = tmp_path / "out"
    argv = ["upscale", str(images), "-o", str(out), "--scale", "3", "--model", str(model)]
    assert main(argv) == 0
    with Image.open(out / "deep.png") as image:
        assert image.size == (15, 18) and image.mode.startswith("I;16")
    with Image.open(out / "alpha.png") as image:
        assert image.size == (18, 21) and image.mode == "RGBA"
    with Image.open(out / "grey.png") as image:
        assert image.size == (24, 27) and image.mode == "L"


def test_never_overwrites(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.png"
    argv = ["upscale", str(images / "grey.png"), "-o", str(out), "--scale", "2"]
    assert main(argv) == 0
    before = out.read_bytes()
    assert main(argv) == 2
    assert "exists; pass --overwrite" in _error(capsys)
    assert out.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--scale is required: 2, 3 or 4"),
        (["--scale", "5"], "--scale must be 2, 3 or 4, got 5"),
        (["--scale", "2", "--model", "dncnn17-gray-sigma25"], "is a denoise model"),
        (["--scale", "2", "--model", "vdsr"], "architecture 'vdsr' has no trained weights"),
        (
            ["--scale", "2", "--model", "nope"],
            "model 'nope' is unknown; use bicubic",
        ),
        (["--scale", "2", "--model", "nope.safetensors"], "model file not found"),
        (["--scale", "2", "--tile", "-1"], "--tile must be a number of pixels >= 0"),
        (["--scale", "2", "--device", "cuda:7"], "CUDA is not available"),
    ],
)
def test_bad_inputs_fail_before_any_work(
    images: Path, tmp_path: Path, extra: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    if "cuda:7" in extra and torch.cuda.is_available():
        pytest.skip("CUDA present")
    out = tmp_path / "never"
    assert main(["upscale", str(images), "-o", str(out), *extra]) == 2
    assert message in _error(capsys)
    assert not out.exists()


def test_missing_input_and_tiny_image(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"), "--scale", "2"]
    assert main(argv) == 2
    assert "input not found" in _error(capsys)
    Image.fromarray(np.zeros((4, 5), dtype=np.uint8)).save(images / "tiny.png")
    model = save_model(create_model("n3net-sr"), tmp_path / "n.safetensors", {"task": "sr"})
    argv = ["upscale", str(images / "tiny.png"), "-o", str(tmp_path / "o.png"), "--scale", "2"]
    assert main([*argv, "--model", str(model)]) == 0  # below N3Net-SR's 16x16: edge-padded
    assert Image.open(tmp_path / "o.png").size == (10, 8)
