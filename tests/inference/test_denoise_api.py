"""Tests for the public denoising API: n3net.denoise, n3net.Denoiser, the restorer's tiling
policy and the sample image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import n3net
from n3net.eval.metrics import psnr
from n3net.inference import Denoiser, Restorer, default_model, denoise, geometry, trained_models
from n3net.models import _registry, create_model, save_model

# A randomly initialised N3Net small enough for CPU tests; context radius 2*3 + (3 + 2 + 3) = 14.
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


def _dncnn(channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("dncnn", channels=channels, depth=3, features=8).eval()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return save_model(_dncnn(), tmp_path / "tiny.safetensors", {"sigma": "25"})


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights folder standing in for the package's, with grey models for sigma 25 and 50."""
    folder = tmp_path / "weights"
    folder.mkdir()
    save_model(_dncnn(), folder / "dncnn3-gray-sigma25.safetensors", {"sigma": "25"})
    save_model(_dncnn(), folder / "dncnn3-gray-sigma50.safetensors", {"sigma": "50"})
    n3 = create_model("n3net", **SMALL_N3NET)
    save_model(n3, folder / "n3small-gray-sigma25.safetensors", {"sigma": "25"})
    monkeypatch.setattr(_registry, "_weights_dir", lambda: folder)
    return folder


def _image(height: int = 24, width: int = 20, channels: int = 0, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_import_n3net_stays_light() -> None:
    code = "import sys, n3net; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("first", ["package", "module"])
def test_n3net_denoise_is_the_function_whatever_the_import_order(first: str) -> None:
    lines = {
        "package": "import n3net; f = n3net.denoise; import n3net.inference.denoiser as m",
        "module": "import n3net.inference.denoiser as m; import n3net; f = n3net.denoise",
    }[first]
    code = (
        f"{lines}\nimport types\n"
        "from n3net import denoise\n"
        "assert isinstance(f, types.FunctionType) and f is m.denoise is denoise\n"
        "import n3net.cli.denoise\n"
        "assert n3net.denoise is f\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_lazy_names() -> None:
    assert n3net.Denoiser is Denoiser
    assert "denoise" in dir(n3net)
    with pytest.raises(AttributeError):
        n3net.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    "image",
    [
        np.full((20, 18), 100, np.uint8),
        np.full((20, 18, 3), 100, np.uint8),
        np.full((20, 18), 30000, np.uint16),
        _image(),
        _image(channels=3).astype(np.float64),
        _image(channels=1),
    ],
    ids=["uint8-grey", "uint8-rgb", "uint16-grey", "float32-grey", "float64-rgb", "float32-hw1"],
)
def test_numpy_in_same_type_out(image: np.ndarray) -> None:
    out = denoise(image, model=_dncnn())
    assert isinstance(out, np.ndarray)
    assert out.shape == image.shape and out.dtype == image.dtype
    if image.dtype.kind == "f":
        assert out.min() >= 0 and out.max() <= 1


def test_integer_scaling_matches_float() -> None:
    model = _dncnn()
    grey8 = (np.random.default_rng(1).random((16, 16)) * 255).round().astype(np.uint8)
    out8 = denoise(grey8, model=model)
    reference = denoise(grey8.astype(np.float32) / 255, model=model)
    np.testing.assert_array_equal(out8, np.round(reference.astype(np.float64) * 255))
    grey16 = grey8.astype(np.uint16) * 257
    np.testing.assert_allclose(denoise(grey16, model=model) / 65535, reference, atol=2e-5)


def test_tensors_keep_layout_dtype_and_device(device: torch.device) -> None:
    model = _dncnn()
    x = torch.rand(3, 16, 12, device=device)
    out = denoise(x, model=model, device=device)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    batch = torch.rand(2, 1, 16, 12, dtype=torch.float64, device=device)
    out = denoise(batch, model=model, device=device)
    assert out.shape == batch.shape and out.dtype == torch.float64 and out.device == batch.device
    as_bytes = (x * 255).round().to(torch.uint8)
    assert denoise(as_bytes, model=model, device=device).dtype == torch.uint8


def test_grey_model_denoises_rgb_per_channel() -> None:
    model = _dncnn()
    rgb = _image(channels=3)
    out = denoise(rgb, model=model, clip=False)
    for c in range(3):
        single = denoise(np.ascontiguousarray(rgb[:, :, c]), model=model, clip=False)
        np.testing.assert_allclose(out[:, :, c], single, atol=1e-6)


def test_colour_model() -> None:
    model = _dncnn(channels=3)
    rgb = _image(channels=3)
    expected = model(torch.from_numpy(rgb).permute(2, 0, 1)[None]).detach()
    out = denoise(rgb, model=model, clip=False)
    np.testing.assert_allclose(out, expected[0].permute(1, 2, 0).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="3-channel images, got 1"):
        denoise(_image(), model=model)


def test_alpha_is_passed_through() -> None:
    rgba = np.random.default_rng(2).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    out = denoise(rgba, model=_dncnn())
    assert out.shape == rgba.shape
    np.testing.assert_array_equal(out[:, :, 3], rgba[:, :, 3])
    grey_alpha = rgba[:, :, 2:]
    np.testing.assert_array_equal(denoise(grey_alpha, model=_dncnn())[:, :, 1], rgba[:, :, 3])


def test_model_by_file_name_and_default(shipped: Path, model_file: Path) -> None:
    image = _image()
    by_module = denoise(image, model=_dncnn())
    np.testing.assert_array_equal(denoise(image, model=model_file), by_module)
    np.testing.assert_array_equal(denoise(image, model=str(model_file)), by_module)
    np.testing.assert_array_equal(denoise(image, model="dncnn3-gray-sigma50"), by_module)
    assert trained_models() == {
        "dncnn3-gray-sigma25": 25.0,
        "dncnn3-gray-sigma50": 50.0,
        "n3small-gray-sigma25": 25.0,
    }
    assert default_model(25) == "n3small-gray-sigma25"  # N3Net before DnCNN
    assert default_model(50) == "dncnn3-gray-sigma50"
    assert Denoiser().name == "n3small-gray-sigma25"  # sigma 25 when nothing is given
    assert Denoiser(sigma=50).name == "dncnn3-gray-sigma50"
    assert Denoiser(model_file).sigma == 25.0  # the file's own sigma
    with pytest.raises(ValueError, match=r"no trained model for sigma 70; trained sigmas: 25, 50"):
        denoise(image, sigma=70)


def test_default_prefers_the_best_measured_psnr(shipped: Path) -> None:
    """A recorded BSD68 PSNR outranks the architecture order; unrecorded files rank last."""
    save_model(
        _dncnn(), shipped / "dncnn3-gray-sigma25.safetensors", {"sigma": "25", "bsd68_psnr": "28.2"}
    )
    assert default_model(25) == "dncnn3-gray-sigma25"
    n3 = create_model("n3net", **SMALL_N3NET)
    save_model(
        n3, shipped / "n3small-gray-sigma25.safetensors", {"sigma": "25", "bsd68_psnr": "27.5"}
    )
    assert default_model(25) == "dncnn3-gray-sigma25"
    save_model(
        n3, shipped / "n3small-gray-sigma25.safetensors", {"sigma": "25", "bsd68_psnr": "28.3"}
    )
    assert default_model(25) == "n3small-gray-sigma25"
    save_model(
        n3, shipped / "n3small-gray-sigma25.safetensors", {"sigma": "25", "bsd68_psnr": "28.2"}
    )
    assert default_model(25) == "n3small-gray-sigma25"  # a tie: N3Net before DnCNN
    save_model(n3, shipped / "n3small-gray-sigma25.safetensors", {"sigma": "25", "bsd68_psnr": "x"})
    assert default_model(25) == "dncnn3-gray-sigma25"  # unreadable counts as unrecorded


def test_no_weights_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_weights_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="no trained weights are shipped yet"):
        denoise(_image(), sigma=25)


def test_errors(model_file: Path, tmp_path: Path) -> None:
    image = _image()
    with pytest.raises(ValueError, match="trained for sigma 25, not 50"):
        denoise(image, sigma=50, model=model_file)
    for sigma in (0, -1.0, float("nan"), "abc"):
        with pytest.raises(ValueError, match="sigma must be"):
            denoise(image, sigma=sigma, model=model_file)
    with pytest.raises(FileNotFoundError):
        denoise(image, model=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="unknown model"):
        denoise(image, model="no-such-model")
    with pytest.raises(ValueError, match="dtype int32"):
        denoise(image.astype(np.int32), model=model_file)
    with pytest.raises(ValueError, match="shape"):
        denoise(np.zeros((4, 5, 6, 7), np.float32), model=model_file)
    with pytest.raises(ValueError, match="NaN"):
        denoise(np.full((8, 8), np.nan, np.float32), model=model_file)
    with pytest.raises(ValueError, match="numpy array or a torch tensor"):
        denoise([[0.5]], model=model_file)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            denoise(image, model=model_file, device="cuda")


def test_declared_receptive_radius() -> None:
    def radius(module: torch.nn.Module) -> int:
        return geometry(module).receptive_radius

    assert radius(create_model("dncnn")) == 17
    assert radius(create_model("dncnn", depth=18)) == 18
    paper = create_model("n3net", impl="reference")
    assert radius(paper) == 3 * 6 + 2 * (3 + 7 * 5 + 9) == 112
    assert geometry(paper).grid == (10, 5)
    assert radius(create_model("n3net", **SMALL_N3NET)) == 14
    assert radius(create_model("n3net-light", impl="reference")) == 2 * 6 + (3 + 7 * 5 + 9)
    assert radius(create_model("knn-noisy")) == 3 * 6 + 2 * (7 * 5 + 9)
    assert radius(create_model("knn-dncnn")) == 3 * 6 + 2 * (7 * 5 + 9) + 17
    assert radius(torch.nn.Conv2d(1, 1, 5)) == 2  # undeclared: the convolutions' radii
    assert geometry(torch.nn.Conv2d(1, 1, 5)).grid is None


def test_tiles_match_the_whole_image_dncnn() -> None:
    model = _dncnn()
    image = _image(70, 61)
    whole = denoise(image, model=model, clip=False)
    tiled = denoise(image, model=model, tile=24, clip=False)  # context = depth 3
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_tiles_within_a_hundredth_of_a_db_n3net() -> None:
    torch.manual_seed(0)
    model = create_model("n3net", **SMALL_N3NET).eval()
    clean = torch.from_numpy(_image(120, 120, seed=3))[None, None]
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)) * 0.1
    den = Denoiser(model)
    whole = den.denoise_tensor(noisy)
    tiled = den.denoise_tensor(noisy, tile=64)
    assert abs(psnr(tiled, clean) - psnr(whole, clean)) < 0.01
    assert torch.allclose(tiled, whole, atol=1e-4)


def test_tiles_on_the_patch_grid_equal_the_whole_image() -> None:
    torch.manual_seed(0)
    model = create_model("n3net", **SMALL_N3NET).eval()
    noisy = torch.rand(1, 1, 77, 71)
    den = Denoiser(model, channels_last=False)  # one memory format: only the tiling differs
    whole = den.denoise_tensor(noisy)
    # equal up to float summation order (the N3 aggregation sums in another order per size)
    torch.testing.assert_close(den.denoise_tensor(noisy, tile=30), whole, atol=1e-4, rtol=0)


def test_tile_smaller_than_the_receptive_field_is_refused() -> None:
    den = Denoiser(create_model("n3net", **SMALL_N3NET))
    with pytest.raises(ValueError, match=r"tile must be at least 29 px .* receptive field"):
        den(_image(), tile=20)
    assert den(_image(40, 30), tile=9, context=4).shape == (40, 30)  # less context: smaller


def test_automatic_tiles_under_the_memory_limit() -> None:
    model = _dncnn()
    calls: list[tuple[int, ...]] = []
    model.register_forward_hook(lambda _m, args, _out: calls.append(tuple(args[0].shape)))
    x = torch.rand(1, 1, 60, 50)
    whole = Restorer(model, channels_last=False).restore_tensor(x)
    assert calls == [(1, 1, 60, 50)]  # it fits: one pass, bit-exact with the model
    torch.testing.assert_close(whole, model(x).detach(), rtol=0, atol=0)
    per_pixel = geometry(model).memory_per_pixel
    limit = 30 * 30 * per_pixel / 2**20  # megabytes for a 30 x 30 window
    small = Restorer(model, channels_last=False, memory_limit=limit)
    assert small.plan_tile(60, 50) == 30 - 2 * 3
    calls.clear()
    tiled = small.restore_tensor(x)
    assert len(calls) > 1 and max(h * w for *_, h, w in calls) <= 30 * 30
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
    calls.clear()
    small.restore_tensor(x, tile=0)  # 0: the whole image whatever the limit
    assert calls == [(1, 1, 60, 50)]


def test_too_small_for_n3net_names_the_minimum() -> None:
    den = Denoiser(create_model("n3net"))
    with pytest.raises(ValueError, match=r"at least 16x16 px .*got 8x8"):
        den(np.zeros((8, 8), np.uint8))


def test_float_image_on_the_0_255_scale_is_refused() -> None:
    image = np.full((16, 16), 200.0, np.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\] scale, got values up to 200.*divide"):
        denoise(image, model=_dncnn())
    with pytest.raises(ValueError, match="scale"):
        denoise(torch.from_numpy(image)[None], model=_dncnn())
    noisy = np.full((16, 16), 1.9, np.float32)  # unclipped noise above 1 is fine
    assert denoise(noisy, model=_dncnn()).shape == (16, 16)


def test_classic_baseline() -> None:
    noisy = np.clip(_image() * 0 + 0.5 + np.random.default_rng(0).normal(0, 0.1, (24, 20)), 0, 1)
    out = denoise(noisy.astype(np.float32), sigma=25, model="nlm")
    assert out.shape == noisy.shape
    assert np.abs(out - 0.5).mean() < np.abs(noisy - 0.5).mean()


def test_sample_image() -> None:
    clean_path, noisy_path = n3net.sample_image_path(noisy=False), n3net.sample_image_path()
    assert clean_path.name == "sample_gray.png" and noisy_path.name == "sample_gray_noisy25.png"
    clean = np.asarray(Image.open(clean_path), dtype=np.float64)
    noisy = np.asarray(Image.open(noisy_path), dtype=np.float64)
    assert clean.shape == noisy.shape == (256, 256)
    assert clean_path.stat().st_size < 100_000 and noisy_path.stat().st_size < 100_000
    assert psnr(noisy, clean, data_range=255.0) == pytest.approx(20.40, abs=0.01)


@pytest.mark.parametrize("arch", ["dncnn", "n3net"])
def test_channels_last_on_cpu_matches_contiguous(arch: str) -> None:
    torch.manual_seed(0)
    kwargs: dict[str, Any] = dict(depth=3, features=8) if arch == "dncnn" else dict(SMALL_N3NET)
    if arch == "n3net":
        kwargs["impl"] = "fast"
    model = create_model(arch, **kwargs).eval()
    x = torch.rand(2, 1, 37, 29)
    plain = Denoiser(model, channels_last=False)
    assert plain._fn is plain.module
    expected = plain.denoise_tensor(x)
    default = Denoiser(model)  # CPU: channels-last by default
    assert default._fn is not default.module
    out = default.denoise_tensor(x)
    assert out.is_contiguous()
    # Convolutions round differently in the two layouts; a randomly initialised N3 block
    # amplifies that (trained models agree to 1e-6), a wrong layout would be off by ~0.1.
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 if arch == "dncnn" else 2e-4)
