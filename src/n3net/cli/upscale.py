"""`n3net upscale`: super-resolve image files or folders by 2, 3 or 4.

Everything that can fail is checked before the first image is upscaled: the scale, the inputs
and their sizes, the outputs (never overwritten without --overwrite, the folder writable), the
model (a super-resolution model trained for the scale, a missing optional extra) and the tile.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from n3net.cli._errors import CliError
from n3net.cli._options import add_low_memory, apply_memory_policy
from n3net.cli.denoise import _check_targets, _expand, _targets

_SCALES = (2, 3, 4)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `upscale` subcommand."""
    parser = subparsers.add_parser(
        "upscale",
        help="super-resolve image files or folders by 2, 3 or 4",
        description="Make PNG, JPEG or TIFF images (8- or 16-bit, grey or RGB, alpha upscaled "
        "bicubically) exactly --scale times larger: MATLAB-style bicubic interpolation, then a "
        "super-resolution network on the luminance (Y of YCbCr); colour stays bicubic. Outputs "
        "keep the input's bit depth. Large outputs are processed in tiles automatically (see "
        "--memory).",
        epilog="Examples: n3net upscale photo.png -o out/photo_x2.png --scale 2; "
        "n3net upscale photos/ -o out/x4/ --scale 4 --model runs/n3net-sr",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="IN", help="image files and/or folders of images"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file (one input file) or folder (several inputs or a folder; created), "
        "one output per input with the same name",
    )
    parser.add_argument("--scale", type=int, metavar="2|3|4", help="the factor: 2, 3 or 4")
    parser.add_argument(
        "--model",
        metavar="NAME_OR_FILE",
        help="'bicubic', a pretrained name, a .safetensors model file or a training run folder "
        "of `n3net train --task sr` (default: the shipped super-resolution weights, else bicubic)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="cpu|cuda",
        help="where the model runs, e.g. cpu, cuda, cuda:1 (default: cpu)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        metavar="N",
        help="run the network on N x N tiles of the output, each with its receptive-field "
        "radius as context, so the result equals the whole-image one; N must be at least the "
        "receptive field (231 px for N3Net-SR, 41 for VDSR); 0 runs whole images (default: "
        "tiles only when an image exceeds --memory)",
    )
    parser.add_argument(
        "--context",
        type=int,
        metavar="PX",
        help="context kept around each tile instead of the full receptive field: faster but "
        "not exact",
    )
    parser.add_argument(
        "--memory",
        type=float,
        default=1024.0,
        metavar="MB",
        help="memory the network's pass may use before an image is tiled automatically "
        "(default: 1024)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_low_memory(parser)
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    if args.output is None:
        raise CliError("-o/--output is required (a file for one input, else a folder)")
    if args.scale is None:
        raise CliError("--scale is required: 2, 3 or 4")
    if args.scale not in _SCALES:
        raise CliError(f"--scale must be 2, 3 or 4, got {args.scale}")
    if args.tile is not None and args.tile < 0:
        raise CliError(f"--tile must be a number of pixels >= 0, got {args.tile}")
    if args.context is not None and args.context < 0:
        raise CliError(f"--context must be >= 0, got {args.context}")
    if not (math.isfinite(args.memory) and args.memory > 0):
        raise CliError(f"--memory must be a number of megabytes > 0, got {args.memory:g}")


def run(args: argparse.Namespace) -> int:
    """Upscale every input and write it beside the others in the output."""
    _check_options(args)
    files, any_folder = _expand(args.inputs)
    output = Path(args.output)
    folder_out = (
        any_folder or len(files) > 1 or output.is_dir() or args.output.endswith(("/", "\\"))
    )
    targets = _targets(files, output, folder_out)
    _check_targets(files, targets, args.overwrite)

    from tqdm import tqdm

    from n3net._checks import require_extra
    from n3net.data.imageio import image_size, read_image, write_image
    from n3net.inference import Upscaler

    require_extra("resize_right", "n3net upscale", extra="sr")
    upscaler = Upscaler(args.model, args.scale, args.device, memory_limit=args.memory)
    upscaler.check_tile(args.tile, args.context)
    for source in files:  # image headers only: a too-small image fails before any work
        try:
            upscaler.check_size(*image_size(source))
        except ValueError as error:
            raise CliError(f"'{source}': {error}") from None
    apply_memory_policy(args.low_memory, upscaler.device)
    for folder in dict.fromkeys(target.parent for target in targets):
        folder.mkdir(parents=True, exist_ok=True)
    pairs = list(zip(files, targets, strict=True))
    for source, target in tqdm(pairs, desc="upscale", unit="img", disable=len(files) < 2):
        image = read_image(source)
        large = upscaler(image.data, tile=args.tile, context=args.context, progress=True)
        alpha = None if image.alpha is None else _upscale_alpha(image.alpha, args.scale)
        write_image(
            target, large, alpha, image.bit_depth, overwrite=args.overwrite, info=image.info
        )
    where = output if folder_out else targets[0]
    print(f"upscaled {len(files)} image(s) x{args.scale} with {upscaler.name} -> {where}")
    return 0


def _upscale_alpha(alpha: object, scale: int) -> object:
    """Alpha (H, W) in [0, 1] upscaled bicubically and clipped."""
    import torch

    from n3net.degradations.bicubic import bicubic_upscale

    plane = torch.from_numpy(alpha)[None, None].float()  # type: ignore[arg-type]
    return bicubic_upscale(plane, scale)[0, 0].clamp(0.0, 1.0).numpy()
