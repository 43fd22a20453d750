"""Side-by-side picture of one crop: each super-resolution model's output, then the original.

Usage::

    python scripts/sr_figure.py IMAGE --scale S --box X Y W H [--models M [M ...]]
        [--labels L [L ...]] [-o FIG.png] [--device cpu] [--force]

e.g. ``python scripts/sr_figure.py $N3NET_DATA/set14/ppt3.png --scale 3 --box 160 200 96 96
--models bicubic runs/sr/vdsr runs/sr/n3net-sr -o docs/sr-ppt3-x3.png``.

The image is cropped to a multiple of the scale, as the protocol does (:mod:`n3net.eval.sr`),
and made ``scale`` times smaller with MATLAB-style antialiased bicubic; every model of
``--models`` (``bicubic``, shipped names, ``.safetensors`` files, training run folders;
default: bicubic and the shipped super-resolution weights) upscales it back, and the panels show
the box ``X Y W H`` (high-resolution pixels, left top width height) of each output, then of the
original ("HR"). Colour images are shown in colour (the network restores Y, Cb and Cr stay
bicubic); each title gives the model's Y-PSNR on the whole image under the protocol (8 bits,
``scale`` pixels shaved). Needs matplotlib (``pip install 'n3net[train]'``) and resize_right
(``n3net[sr]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def default_models() -> list[str]:
    """Bicubic, then the shipped super-resolution weights (VDSR before N3Net-SR)."""
    from n3net.models import list_pretrained

    shipped = set(list_pretrained())
    return ["bicubic", *(name for name in ("vdsr-x234", "n3net-sr-x234") if name in shipped)]


def label_of(model: str) -> str:
    """A panel title for a model name, file or run folder.

    Example:
        >>> label_of("runs/sr/n3net-sr"), label_of("vdsr-x234"), label_of("bicubic")
        ('N3Net-SR', 'VDSR', 'bicubic')
    """
    text = model.replace("\\", "/").lower()
    if "n3net-sr" in text:
        return "N3Net-SR"
    if "vdsr" in text:
        return "VDSR"
    if text == "bicubic":
        return "bicubic"
    path = Path(model)
    return path.parent.name if path.name == "model.safetensors" else path.stem


def check_box(box: list[int], height: int, width: int) -> tuple[int, int, int, int]:
    """The box ``(x, y, w, h)`` when it lies inside an ``height x width`` image."""
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(
            f"--box {x} {y} {w} {h} must lie inside the {width}x{height} image (cropped to a "
            "multiple of the scale)"
        )
    return x, y, w, h


def panels(
    image_path: Path, scale: int, models: list[str], device: str = "cpu"
) -> tuple[list[tuple[str, np.ndarray, float | None]], np.ndarray]:
    """Each model's output (H, W[, 3] floats in [0, 1]) with its Y-PSNR; the reference last.

    Returns:
        ``[(model, output, y_psnr), ..., ("HR", reference, None)]`` and the reference.
    """
    import torch
    from PIL import Image

    from n3net.degradations.bicubic import bicubic_downscale, crop_to_scale
    from n3net.eval.sr import load_sr_pair, sr_psnr
    from n3net.inference.upscaler import Upscaler

    with Image.open(image_path) as opened:
        grey = opened.mode in ("L", "I;16", "I")
        array = np.asarray(opened.convert("L" if grey else "RGB"), dtype=np.float64) / 255.0
    planes = torch.from_numpy(array[None, None] if grey else array.transpose(2, 0, 1)[None])
    reference = crop_to_scale(planes, scale)
    low = bicubic_downscale(reference, scale).float()
    lr_y, hr_y = load_sr_pair(image_path, scale)
    results = []
    for model in models:
        upscaler = Upscaler(model, scale, device, memory_limit=None)
        output = upscaler.upscale_tensor(low, tile=0).clamp(0, 1)
        psnr = sr_psnr(upscaler.upscale_y(lr_y, tile=0), hr_y, shave=scale)
        results.append((model, output[0].permute(1, 2, 0).squeeze(-1).numpy(), psnr))
    hr = reference[0].permute(1, 2, 0).squeeze(-1).numpy()
    results.append(("HR", hr, None))
    return results, hr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, help="an 8-bit grey or RGB image (the HR original)")
    parser.add_argument("--scale", type=int, required=True, help="2, 3 or 4 (bicubic: any >= 2)")
    parser.add_argument("--box", type=int, nargs=4, required=True, metavar=("X", "Y", "W", "H"))
    parser.add_argument("--models", nargs="+", help="names, model files or run folders")
    parser.add_argument("--labels", nargs="+", help="panel titles, one per model")
    parser.add_argument("-o", "--out", type=Path, default=Path("sr-figure.png"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: sr_figure.py needs matplotlib (pip install 'n3net[train]')", file=sys.stderr)
        return 2
    models = args.models or default_models()
    if args.labels is not None and len(args.labels) != len(models):
        print(
            f"error: --labels needs {len(models)} titles, got {len(args.labels)}", file=sys.stderr
        )
        return 2
    labels = args.labels or [label_of(m) for m in models]
    if not args.image.is_file():
        print(f"error: image not found: {args.image}", file=sys.stderr)
        return 2
    try:
        from PIL import Image

        with Image.open(args.image) as opened:
            width, height = opened.size
        size = (height - height % args.scale, width - width % args.scale)
        x, y, w, h = check_box(args.box, *size)
        results, _ = panels(args.image, args.scale, models, args.device)
    except (ValueError, FileNotFoundError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    titles = [*labels, "HR"]
    figure, axes = plt.subplots(1, len(results), figsize=(2.6 * len(results), 2.9), squeeze=False)
    for axis, (_, output, psnr), title in zip(axes[0], results, titles, strict=True):
        crop = output[y : y + h, x : x + w]
        axis.imshow(crop, cmap="gray" if crop.ndim == 2 else None, vmin=0, vmax=1,
                    interpolation="nearest")  # fmt: skip
        axis.set_title(title if psnr is None else f"{title}\n{psnr:.2f} dB", fontsize=10)
        axis.set_axis_off()
    figure.suptitle(f"{args.image.name}, ×{args.scale}, box {x} {y} {w} {h}", fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=args.dpi)
    plt.close(figure)
    pairs = zip(titles, results, strict=True)
    scores = ", ".join(f"{t} {p:.2f} dB" for t, (_, _, p) in pairs if p is not None)
    print(f"wrote {args.out} (Y-PSNR on the whole image: {scores})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
