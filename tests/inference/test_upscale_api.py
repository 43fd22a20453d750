"""`n3net.upscale` / Upscaler: layouts, dtypes, colour, tiles, model checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import n3net
from n3net.degradations import bicubic_upscale
from n3net.inference import Upscaler, upscale
from n3net.models import create_model, save_model

pytest.importorskip("resize_right")

SMALL_N3NET_SR = dict(
    k=2, depth=3, features=8, embed_features=8, patch_size=4, stride=2, search_window=3,
    impl="reference", init="he",
)  # fmt: skip  # "he": a random network that is not the identity (the default init starts as it)


def _conditioned(model: torch.nn.Module) -> torch.nn.Module:
    """A random N3Net-SR whose outputs do not hinge on float rounding.

    Under the He init of every layer the N3 blocks' neighbour weights are nearly hard and flip
    where two convolution kernels round differently (whole and tiled passes then differed by
    2.6e-3 on one CPU); with the blocks' last convolutions small they agree to ~1e-6.
    """
    with torch.no_grad():
        for block in getattr(model, "blocks", []):
            block.conv2.weight.mul_(0.05)
    return model


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sizes_dtypes_layouts(scale: int) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (7, 5), dtype=np.uint8)
    out = upscale(grey, scale)
    assert out.shape == (7 * scale, 5 * scale) and out.dtype == np.uint8
    rgb16 = np.random.default_rng(1).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    out = n3net.upscale(rgb16, scale)
    assert out.shape == (4 * scale, 6 * scale, 3) and out.dtype == np.uint16
    tensor = torch.rand(3, 5, 4)
    assert upscale(tensor, scale).shape == (3, 5 * scale, 4 * scale)


def test_bicubic_grey_is_the_interpolation() -> None:
    x = torch.rand(1, 1, 6, 8)
    assert torch.allclose(Upscaler("bicubic", 2).upscale_tensor(x), bicubic_upscale(x, 2))


def test_colour_keeps_bicubic_chroma() -> None:
    """With the identity network the colour result is the bicubic RGB (the YCbCr map is linear)."""
    x = torch.rand(1, 3, 6, 5)
    out = Upscaler("bicubic", 3).upscale_tensor(x)
    assert torch.allclose(out, bicubic_upscale(x, 3), atol=1e-5)


@pytest.mark.parametrize("arch", ["vdsr", "n3net-sr"])
def test_tiles_equal_the_whole_image(arch: str) -> None:
    torch.manual_seed(0)
    kwargs = SMALL_N3NET_SR if arch == "n3net-sr" else {"depth": 4, "features": 8}
    model = _conditioned(create_model(arch, **kwargs)).eval()
    upscaler = Upscaler(model, 2)
    y = torch.rand(1, 1, 37, 30)
    whole = upscaler.upscale_y(y, tile=0)
    tile = upscaler.restorer.min_tile()
    tiled = upscaler.upscale_y(y, tile=tile)
    assert whole.shape == (1, 1, 74, 60)
    assert torch.allclose(whole, tiled, atol=1e-5)
    automatic = Upscaler(model, 2, memory_limit=0.01).upscale_y(y)  # forced to tile
    assert torch.allclose(whole, automatic, atol=1e-5)


def test_model_files_and_run_folders(tmp_path: Path) -> None:
    model = create_model("vdsr", depth=3, features=4)
    (tmp_path / "run").mkdir()
    save_model(model, tmp_path / "run" / "model.safetensors", {"task": "sr", "scales": "2,3"})
    assert Upscaler(tmp_path / "run", 3).name == str(tmp_path / "run")
    with pytest.raises(ValueError, match="trained for scales 2, 3, not 4"):
        Upscaler(tmp_path / "run", 4)
    denoiser = save_model(create_model("dncnn", depth=3, features=4), tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="is a denoise model, not a super-resolution one"):
        Upscaler(denoiser, 2)
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        Upscaler(tmp_path, 2)


def test_errors() -> None:
    with pytest.raises(ValueError, match="scale must be an integer >= 2, got 1"):
        Upscaler("bicubic", 1)
    with pytest.raises(ValueError, match="images with alpha"):
        upscale(np.zeros((4, 4, 4), dtype=np.uint8), 2)
    with pytest.raises(ValueError, match="tile must be at least"):
        Upscaler(create_model("vdsr", depth=4, features=4), 2).upscale_y(
            torch.rand(1, 1, 8, 8), tile=3
        )
    with pytest.raises(ValueError, match="image must not be empty"):
        Upscaler(create_model("n3net-sr").eval(), 2).check_size(0, 4)


def test_images_below_the_n3_minimum_run_edge_padded() -> None:
    """N3Net-SR needs 16x16 px for k = 7 neighbours: a smaller image is edge-padded to that
    size at the network's input and the padding cropped off its output."""
    torch.manual_seed(0)
    model = create_model("n3net-sr", depth=2, features=8).eval()
    up = Upscaler(model, 2)
    with pytest.raises(ValueError, match="needs images of at least 16x16"):
        model.check_size(8, 14)
    up.check_size(4, 7)  # 8x14 after x2: padded, so accepted
    y = torch.rand(1, 1, 4, 7)
    out = up.upscale_y(y, tile=0)
    assert out.shape == (1, 1, 8, 14)
    interpolated = bicubic_upscale(y, 2)
    padded = torch.nn.functional.pad(interpolated, (0, 2, 0, 8), mode="replicate")
    with torch.inference_mode():
        expected = model(padded)[..., :8, :14]
    assert torch.allclose(out, expected, atol=1e-6)
