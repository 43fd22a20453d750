"""Tests for n3net.data.imageio: round trips, alpha, 16 bit, EXIF orientation, errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.data.imageio import LoadedImage, image_size, list_images, read_image, write_image


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _write_png16(path: Path, values: np.ndarray) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour)."""
    height, width = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + values[i].astype(">u2").tobytes() for i in range(height))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class TestRoundTrip:
    @pytest.mark.parametrize("ext", ["png", "tif", "bmp"])
    def test_grey_8bit(self, tmp_path: Path, ext: str) -> None:
        pixels = _rng().integers(0, 256, (9, 13), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"a.{ext}")
        image = read_image(tmp_path / f"a.{ext}")
        assert isinstance(image, LoadedImage)
        assert image.data.shape == (9, 13, 1) and image.data.dtype == np.float32
        assert image.bit_depth == 8 and image.alpha is None and image.mode == "L"
        write_image(tmp_path / f"b.{ext}", image.data)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"b.{ext}")), pixels)

    @pytest.mark.parametrize("ext", ["png", "tif"])
    def test_grey_16bit_exact(self, tmp_path: Path, ext: str) -> None:
        pixels = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
        pixels[0, 1:3] = (65535, 1)
        Image.fromarray(pixels).save(tmp_path / f"a.{ext}")
        image = read_image(tmp_path / f"a.{ext}")
        assert image.bit_depth == 16 and image.data.shape == (64, 64, 1)
        assert image.data.min() == 0.0 and image.data.max() == 1.0
        write_image(tmp_path / f"b.{ext}", image.data, bit_depth=16)
        back = np.asarray(Image.open(tmp_path / f"b.{ext}"))
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, pixels)

    def test_grey_16bit_handwritten_png(self, tmp_path: Path) -> None:
        pixels = _rng().integers(0, 65536, (7, 5), dtype=np.uint16)
        _write_png16(tmp_path / "a.png", pixels)
        image = read_image(tmp_path / "a.png")
        assert image.bit_depth == 16
        np.testing.assert_array_equal(np.round(image.data[:, :, 0] * 65535), pixels)

    @pytest.mark.parametrize("ext", ["png", "tif"])
    def test_rgb(self, tmp_path: Path, ext: str) -> None:
        pixels = _rng().integers(0, 256, (6, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"a.{ext}")
        image = read_image(tmp_path / f"a.{ext}")
        assert image.data.shape == (6, 10, 3) and image.channels == 3 and image.mode == "RGB"
        write_image(tmp_path / f"b.{ext}", image.data)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"b.{ext}")), pixels)

    @pytest.mark.parametrize("mode", ["RGBA", "LA"])
    def test_alpha_kept(self, tmp_path: Path, mode: str) -> None:
        channels = len(mode)
        pixels = _rng().integers(0, 256, (6, 10, channels), dtype=np.uint8)
        Image.fromarray(pixels, mode=mode).save(tmp_path / "a.png")
        image = read_image(tmp_path / "a.png")
        assert image.alpha is not None and image.alpha.shape == (6, 10)
        assert image.data.shape == (6, 10, channels - 1)
        np.testing.assert_array_equal(np.round(image.alpha * 255), pixels[:, :, -1])
        write_image(tmp_path / "b.png", image.data, alpha=image.alpha)
        back = Image.open(tmp_path / "b.png")
        assert back.mode == mode
        np.testing.assert_array_equal(np.asarray(back), pixels)

    def test_palette_with_transparency_becomes_rgba(self, tmp_path: Path) -> None:
        pixels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
        image = Image.fromarray(pixels, mode="P")
        image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (3 * 253))
        image.save(tmp_path / "p.png", transparency=1)
        loaded = read_image(tmp_path / "p.png")
        assert loaded.mode == "P" and loaded.data.shape == (2, 2, 3)
        np.testing.assert_array_equal(loaded.data[0, 0], [1, 0, 0])
        np.testing.assert_array_equal(loaded.alpha, [[1, 0], [1, 0]])

    def test_one_bit_and_cmyk(self, tmp_path: Path) -> None:
        Image.new("1", (4, 3), 1).save(tmp_path / "b.png")
        assert read_image(tmp_path / "b.png").data.shape == (3, 4, 1)
        Image.new("CMYK", (4, 3), (0, 0, 0, 0)).save(tmp_path / "c.tif")
        cmyk = read_image(tmp_path / "c.tif")
        assert cmyk.data.shape == (3, 4, 3) and np.allclose(cmyk.data, 1.0)

    def test_jpeg_grey(self, tmp_path: Path) -> None:
        flat = np.full((16, 16), 0.5, dtype=np.float32)
        write_image(tmp_path / "a.jpg", flat)
        image = read_image(tmp_path / "a.jpg")
        assert image.format == "JPEG" and np.abs(image.data - 0.5).max() < 2 / 255

    def test_clip_round_and_tensor_layout(self, tmp_path: Path) -> None:
        data = torch.tensor([[[-0.2, 0.4 / 255, 1.6 / 255, 1.3]]])  # (1, 1, 4) -> C, H, W
        write_image(tmp_path / "t.png", data[None])  # (1, C, H, W)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "t.png")), [[0, 0, 2, 255]])

    def test_icc_profile_written_back(self, tmp_path: Path) -> None:
        info = {"icc_profile": b"not-a-real-profile", "exif": b"ignored"}
        write_image(tmp_path / "a.png", np.zeros((2, 2)), info=info)
        assert read_image(tmp_path / "a.png").info["icc_profile"] == info["icc_profile"]


def test_exif_orientation_honoured(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high: left half black, right half white. Orientation 6 means "rotate
    # 90 degrees clockwise to display": displayed 20 wide x 40 high, white on the bottom.
    stored = np.zeros((20, 40), dtype=np.uint8)
    stored[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "o.jpg")
    assert image.data.shape == (40, 20, 1)
    assert image.data[:16].max() < 0.1 and image.data[24:].min() > 0.9


class TestErrors:
    def test_corrupt_file(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
        with pytest.raises(ValueError, match=r"^cannot read image '.*bad\.png': ") as info:
            read_image(path)
        assert "\n" not in str(info.value)

    def test_truncated_file(self, tmp_path: Path) -> None:
        Image.fromarray(_rng().integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "a.png")
        data = (tmp_path / "a.png").read_bytes()
        (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="cannot read image"):
            read_image(tmp_path / "t.png")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="cannot read image"):
            read_image(tmp_path / "missing.png")

    def test_16bit_colour_refused(self, tmp_path: Path) -> None:
        _write_png16(tmp_path / "c.png", _rng().integers(0, 65536, (4, 4, 3), dtype=np.uint16))
        with pytest.raises(ValueError, match="16-bit colour"):
            read_image(tmp_path / "c.png")

    def test_float_mode_refused(self, tmp_path: Path) -> None:
        Image.fromarray(np.zeros((3, 3), dtype=np.float32)).save(tmp_path / "f.tif")
        with pytest.raises(ValueError, match="unsupported image mode 'F'"):
            read_image(tmp_path / "f.tif")

    def test_overwrite_protection(self, tmp_path: Path) -> None:
        path = tmp_path / "a.png"
        write_image(path, np.zeros((2, 2)))
        with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
            write_image(path, np.ones((2, 2)))
        assert np.asarray(Image.open(path)).max() == 0
        write_image(path, np.ones((2, 2)), overwrite=True)
        assert np.asarray(Image.open(path)).min() == 255

    @pytest.mark.parametrize(
        ("name", "kwargs", "message"),
        [
            ("a.jpg", {"bit_depth": 16}, "JPEG cannot hold 16-bit"),
            ("a.jpg", {"alpha": np.ones((2, 2))}, "JPEG cannot hold an alpha"),
            ("a.png", {"bit_depth": 12}, "bit_depth must be 8 or 16, got 12"),
            ("a.gif", {}, "unsupported output extension '.gif'"),
            ("a.png", {"alpha": np.ones((3, 2))}, "alpha must be"),
        ],
        ids=["jpeg-16bit", "jpeg-alpha", "bit-depth", "extension", "alpha-shape"],
    )
    def test_write_errors(self, tmp_path: Path, name: str, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            write_image(tmp_path / name, np.zeros((2, 2)), **kwargs)

    def test_16bit_colour_write_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="16-bit output is supported only for grey"):
            write_image(tmp_path / "a.tif", np.zeros((2, 2, 3)), bit_depth=16)

    def test_nan_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="NaN"):
            write_image(tmp_path / "a.png", np.full((2, 2), np.nan))


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.jpg", "c.tiff", "d.txt", "e.JPEG", "f.bmp", "g.tif"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.tiff", "e.JPEG", "f.bmp", "g.tif"]
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "a.jpg")


def test_image_size_reads_the_header_and_orientation(tmp_path: Path) -> None:
    Image.new("L", (30, 20)).save(tmp_path / "plain.png")
    assert image_size(tmp_path / "plain.png") == (20, 30)
    rotated = Image.new("RGB", (30, 20))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    assert image_size(tmp_path / "rotated.jpg") == (30, 20)
    assert read_image(tmp_path / "rotated.jpg").data.shape[:2] == (30, 20)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        image_size(tmp_path / "broken.png")


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def fail(self: Image.Image, *args: object, **kwargs: object) -> None:
        Path(args[0]).write_bytes(b"half")  # a partial file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="No space"):
        write_image(target, np.zeros((4, 4)), overwrite=True)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left
