"""In-process tests of `n3net denoise`: files, folders, bit depth, colour, alpha, tiles, errors."""

from __future__ import annotations

import errno
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.cli.main import main
from n3net.eval.metrics import psnr
from n3net.inference import Denoiser
from n3net.models import _registry, create_model, save_model

SMALL_N3NET = dict(
    k=2,
    depth=3,
    features=8,
    embed_features=8,
    patch_size=4,
    stride=2,
    search_window=3,
    n_blocks=2,
    impl="reference",
)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("dncnn", depth=3, features=8)
    return save_model(model, tmp_path / "grey25.safetensors", {"sigma": "25"})


def _grey(path: Path, height: int = 20, width: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(path)
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "n3net: error:" in line]
    assert len(lines) == 1, lines
    return lines[0][lines[0].index("n3net: error:") :]


def _run(*argv: str | Path) -> int:
    return main(["denoise", *map(str, argv)])


def _read_only_filesystem(*args: Any, **kwargs: Any) -> Any:
    """Stands in for tempfile.TemporaryFile on a read-only mount (root ignores chmod)."""
    raise OSError(errno.EROFS, "Read-only file system")


def test_read_only_folder_is_refused_before_denoising(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    source = _grey(tmp_path / "in.png")
    calls: list[int] = []
    monkeypatch.setattr(Denoiser, "restore_tensor", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(tempfile, "TemporaryFile", _read_only_filesystem)
    assert _run(source, "-o", tmp_path / "out" / "a.png", "--model", model_file) == 2
    line = _error_line(capsys)
    assert "cannot write into" in line and "Read-only file system" in line
    assert calls == [] and not (tmp_path / "out").exists()


def test_existing_outputs_in_a_folder_are_kept(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "noisy"
    inputs.mkdir()
    _grey(inputs / "a.png")
    _grey(inputs / "b.png", seed=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"keep me")
    assert _run(inputs, "-o", out, "--model", model_file) == 2
    assert "exists; pass --overwrite" in _error_line(capsys)
    assert (out / "b.png").read_bytes() == b"keep me" and not (out / "a.png").exists()


def test_large_image_is_tiled_with_a_progress_bar(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _grey(tmp_path / "in.png", 90, 70)
    assert _run(source, "-o", tmp_path / "whole.png", "--model", model_file) == 0
    capsys.readouterr()
    tiny_memory = ["--memory", "0.05"]  # 50 kB: windows of ~37 x 37 px for this DnCNN-3
    assert _run(source, "-o", tmp_path / "tiled.png", "--model", model_file, *tiny_memory) == 0
    assert "tile" in capsys.readouterr().err  # the bar over the tiles
    whole = np.asarray(Image.open(tmp_path / "whole.png"), np.int16)
    tiled = np.asarray(Image.open(tmp_path / "tiled.png"), np.int16)
    assert np.abs(whole - tiled).max() <= 1  # equal up to float rounding


def test_one_file(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _grey(tmp_path / "in.png")
    target = tmp_path / "out.png"
    assert _run(source, "-o", target, "--model", model_file) == 0
    assert "denoised 1 image(s)" in capsys.readouterr().out
    with Image.open(target) as image:
        assert image.mode == "L" and image.size == (16, 20)
        written = np.asarray(image)
    expected = Denoiser(model_file)(np.asarray(Image.open(source), np.float32)[..., None] / 255)
    np.testing.assert_array_equal(written, np.round(expected[..., 0] * 255).astype(np.uint8))


def test_one_file_into_a_new_folder(model_file: Path, tmp_path: Path) -> None:
    source = _grey(tmp_path / "in.png")
    target = tmp_path / "new" / "sub" / "out.png"
    assert _run(source, "-o", target, "--model", model_file) == 0
    assert target.is_file()


def test_never_overwrites(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = _grey(tmp_path / "in.png")
    target = tmp_path / "out.png"
    target.write_bytes(b"keep me")
    assert _run(source, "-o", target, "--model", model_file) == 2
    assert "exists; pass --overwrite" in _error_line(capsys)
    assert target.read_bytes() == b"keep me"
    assert _run(source, "-o", target, "--model", model_file, "--overwrite") == 0
    assert Image.open(target).size == (16, 20)
    assert _run(source, "-o", source, "--model", model_file, "--overwrite") == 2
    assert "its own input" in _error_line(capsys)


def test_folder_in_folder_out(model_file: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "noisy"
    inputs.mkdir()
    _grey(inputs / "a.png")
    _grey(inputs / "b.tif", seed=1)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(inputs / "c.jpg", quality=95)
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "clean" / "nested"
    assert _run(inputs, "-o", out, "--model", model_file) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.jpg"]
    assert Image.open(out / "c.jpg").format == "JPEG"
    assert _run(inputs, "-o", out, "--model", model_file) == 2  # all exist now


def test_several_files_go_to_a_folder(model_file: Path, tmp_path: Path) -> None:
    first, second = _grey(tmp_path / "x.png"), _grey(tmp_path / "y.png", seed=1)
    out = tmp_path / "out"
    assert _run(first, second, "-o", out, "--model", model_file) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.png", "y.png"]
    assert _run(first, "-o", f"{tmp_path / 'single'}/", "--model", model_file) == 0
    assert (tmp_path / "single" / "x.png").is_file()


def test_sixteen_bit_grey_round_trip(model_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, (20, 16), dtype=np.uint16)
    source = tmp_path / "deep.png"
    Image.fromarray(values).save(source)
    assert _run(source, "-o", tmp_path / "deep_out.png", "--model", model_file) == 0
    assert _run(source, "-o", tmp_path / "deep_out.tif", "--model", model_file) == 0
    png, tif = Image.open(tmp_path / "deep_out.png"), Image.open(tmp_path / "deep_out.tif")
    assert png.mode.startswith("I;16") and tif.mode.startswith("I;16")
    out = np.asarray(png).astype(np.float64)
    expected = Denoiser(model_file)(values.astype(np.float32) / 65535) * 65535
    np.testing.assert_allclose(out, np.round(expected), atol=1)
    assert len(np.unique(out % 257)) > 1  # really 16-bit values, not 8-bit ones scaled


def test_rgb_is_denoised_per_channel(model_file: Path, tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 16, 3), dtype=np.uint8)
    source = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(source)
    assert _run(source, "-o", tmp_path / "rgb_out.png", "--model", model_file) == 0
    out = np.asarray(Image.open(tmp_path / "rgb_out.png"))
    assert out.shape == rgb.shape
    for c in range(3):
        single = tmp_path / f"channel{c}.png"
        Image.fromarray(np.ascontiguousarray(rgb[:, :, c])).save(single)
        assert _run(single, "-o", tmp_path / f"channel{c}_out.png", "--model", model_file) == 0
        grey = np.asarray(Image.open(tmp_path / f"channel{c}_out.png"))
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_alpha_is_kept(model_file: Path, tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (20, 16, 4), dtype=np.uint8)
    source = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(source)
    assert _run(source, "-o", tmp_path / "rgba_out.png", "--model", model_file) == 0
    with Image.open(tmp_path / "rgba_out.png") as image:
        assert image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image)[:, :, 3], rgba[:, :, 3])


def test_exif_orientation_is_applied(model_file: Path, tmp_path: Path) -> None:
    source = tmp_path / "rotated.jpg"
    image = Image.fromarray(np.full((20, 30), 128, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(source, exif=exif, quality=95)
    assert _run(source, "-o", tmp_path / "upright.png", "--model", model_file) == 0
    assert Image.open(tmp_path / "upright.png").size == (20, 30)  # (width, height) swapped


def test_colour_model_on_rgb(tmp_path: Path) -> None:
    colour = create_model("dncnn", channels=3, depth=3, features=8)
    model = save_model(colour, tmp_path / "rgb.safetensors", {"sigma": "25"})
    rgb = np.random.default_rng(0).integers(0, 256, (20, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert _run(tmp_path / "rgb.png", "-o", tmp_path / "rgb_out.png", "--model", model) == 0
    assert np.asarray(Image.open(tmp_path / "rgb_out.png")).shape == (20, 16, 3)
    _grey(tmp_path / "grey.png")
    assert _run(tmp_path / "grey.png", "-o", tmp_path / "grey_out.png", "--model", model) == 2


def test_tiles_within_a_hundredth_of_a_db(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = save_model(create_model("n3net", **SMALL_N3NET), tmp_path / "n3.safetensors")
    rng = np.random.default_rng(0)
    clean = np.kron(rng.random((12, 12)), np.ones((10, 10)))  # 120 x 120, blocky
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1)
    Image.fromarray(np.round(noisy * 255).astype(np.uint8)).save(tmp_path / "noisy.png")
    assert _run(tmp_path / "noisy.png", "-o", tmp_path / "whole.png", "--model", model) == 0
    argv = [tmp_path / "noisy.png", "-o", tmp_path / "tiled.png", "--model", model]
    assert _run(*argv, "--tile", "40") == 0
    faster = [tmp_path / "noisy.png", "-o", tmp_path / "faster.png", "--model", model]
    assert _run(*faster, "--tile", "40", "--context", "8") == 0
    whole = np.asarray(Image.open(tmp_path / "whole.png"), np.float64) / 255
    for name in ("tiled.png", "faster.png"):
        tiled = np.asarray(Image.open(tmp_path / name), np.float64) / 255
        assert abs(psnr(tiled, clean) - psnr(whole, clean)) < 0.01


def test_default_model_comes_from_sigma(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    save_model(
        create_model("dncnn", depth=3, features=8), weights / "dn-s50.safetensors", {"sigma": "50"}
    )
    monkeypatch.setattr(_registry, "_weights_dir", lambda: weights)
    source = _grey(tmp_path / "in.png")
    assert _run(source, "-o", tmp_path / "out.png", "--sigma", "50") == 0
    assert "dn-s50 (sigma 50)" in capsys.readouterr().out
    assert _run(source, "-o", tmp_path / "out25.png") == 2
    assert "no trained model for sigma 25; trained sigmas: 50" in _error_line(capsys)


@pytest.mark.parametrize(
    "case, message",
    [
        ("unreadable", "cannot read image"),
        ("missing-input", "input not found"),
        ("no-output", "-o/--output is required"),
        ("sigma-zero", "--sigma must be > 0"),
        ("sigma-negative", "--sigma must be > 0"),
        ("missing-model", "model file not found"),
        ("unknown-model", "unknown model"),
        ("sigma-mismatch", "trained for sigma 25, not 50"),
        ("bad-extension", "needs an image extension"),
        ("tile-too-small", "tile must be at least 7 px"),
        ("empty-folder", "holds no images (png, jpg"),
        ("negative-context", "--context must be >= 0"),
        ("negative-tile", "--tile must be a number of pixels >= 0"),
        ("too-small-for-n3net", "needs images of at least 16x16 px"),
        ("read-only-output", "cannot write into"),
        ("bm3d-without-extra", "pip install 'n3net[eval]'"),
        ("nlm-without-extra", "pip install 'n3net[eval]'"),
        ("sr-model", "model vdsr is a sr model, not a denoiser"),
        ("pose-model", "model oracle is a correspondences model, not a denoiser"),
        ("sr-model-file", "is a sr model, not a denoiser"),
    ],
)
def test_errors_are_one_line(
    case: str,
    message: str,
    model_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = _grey(tmp_path / "in.png")
    argv: list[str | Path] = [source, "-o", tmp_path / "out.png", "--model", model_file]
    if case == "unreadable":
        source.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    elif case == "missing-input":
        argv[0] = tmp_path / "missing.png"
    elif case == "no-output":
        argv = [source, "--model", model_file]
    elif case == "sigma-zero":
        argv += ["--sigma", "0"]
    elif case == "sigma-negative":
        argv += ["--sigma=-5"]
    elif case == "missing-model":
        argv[-1] = tmp_path / "missing.safetensors"
    elif case == "unknown-model":
        argv[-1] = "no-such-model"
    elif case == "sigma-mismatch":
        argv += ["--sigma", "50"]
    elif case == "bad-extension":
        argv[2] = tmp_path / "out.xyz"
    elif case == "tile-too-small":
        argv += ["--tile", "6"]
    elif case == "empty-folder":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("not an image")
        argv[0] = tmp_path / "empty"
    elif case == "negative-context":
        argv += ["--context=-1"]
    elif case == "negative-tile":
        argv += ["--tile=-1"]
    elif case == "too-small-for-n3net":
        _grey(source, 8, 8)
        argv[-1] = "n3net-gray-sigma25"
    elif case == "read-only-output":
        monkeypatch.setattr(tempfile, "TemporaryFile", _read_only_filesystem)
    elif case in ("bm3d-without-extra", "nlm-without-extra"):
        monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d -> ImportError
        monkeypatch.setitem(sys.modules, "skimage.restoration", None)
        argv[-1] = case.split("-")[0]
    elif case in ("sr-model", "pose-model"):
        argv[-1] = "vdsr" if case == "sr-model" else "oracle"
    elif case == "sr-model-file":
        vdsr = create_model("vdsr", depth=3, features=4)
        argv[-1] = save_model(vdsr, tmp_path / "sr.safetensors")
    assert _run(*argv) != 0
    assert message in _error_line(capsys)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_when_absent(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = _grey(tmp_path / "in.png")
    assert _run(source, "-o", tmp_path / "o.png", "--model", model_file, "--device", "cuda") == 2
    assert "CUDA is not available" in _error_line(capsys)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model_file: Path, tmp_path: Path) -> None:
    source = _grey(tmp_path / "in.png", 40, 36)
    for device in ("cpu", "cuda"):
        assert (
            _run(
                source, "-o", tmp_path / f"{device}.png", "--model", model_file, "--device", device
            )
            == 0
        )
    cpu = np.asarray(Image.open(tmp_path / "cpu.png"), np.int16)
    cuda = np.asarray(Image.open(tmp_path / "cuda.png"), np.int16)
    assert np.abs(cpu - cuda).max() <= 1
