"""`n3net upscale`: super-resolve image files or folders by 2, 3 or 4.

Everything that can fail is checked before the first image is upscaled: the scale, the inputs
and their sizes, the outputs (never overwritten without --overwrite, the folder writable), the
model (a super-resolution model trained for the scale, a missing optional extra) and the tile.
"""

from __future__ import annotations

import argparse

from n3net.cli._errors import CliError
from n3net.cli._images import (
    add_input_output,
    add_run_options,
    check_common_options,
    plan_outputs,
    process_images,
)

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
    add_input_output(parser)
    parser.add_argument("--scale", type=int, metavar="2|3|4", help="the factor: 2, 3 or 4")
    parser.add_argument(
        "--model",
        metavar="NAME_OR_FILE",
        help="'bicubic', a pretrained name, a .safetensors model file or a training run folder "
        "of `n3net train --task sr` (default: the shipped super-resolution weights, else bicubic)",
    )
    add_run_options(
        parser,
        tile_help="run the network on N x N tiles of the output, each with its receptive-field "
        "radius as context, so the result equals the whole-image one; N must be at least the "
        "receptive field (231 px for N3Net-SR, 41 for VDSR); 0 runs whole images (default: "
        "tiles only when an image exceeds --memory)",
        context_help="context kept around each tile instead of the full receptive field: faster "
        "but not exact",
        memory_help="memory the network's pass may use before an image is tiled automatically "
        "(default: 1024)",
    )
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    check_common_options(args)
    if args.scale is None:
        raise CliError("--scale is required: 2, 3 or 4")
    if args.scale not in _SCALES:
        raise CliError(f"--scale must be 2, 3 or 4, got {args.scale}")


def run(args: argparse.Namespace) -> int:
    """Upscale every input and write it beside the others in the output."""
    _check_options(args)
    plan = plan_outputs(args.inputs, args.output, args.overwrite)

    from n3net._checks import require_extra
    from n3net.inference import Upscaler

    require_extra("resize_right", "n3net upscale", extra="sr")
    upscaler = Upscaler(args.model, args.scale, args.device, memory_limit=args.memory)
    process_images(
        plan, upscaler, args, verb="upscale", alpha=lambda a: _upscale_alpha(a, args.scale)
    )
    print(f"upscaled {len(plan.files)} image(s) x{args.scale} with {upscaler.name} -> {plan.where}")
    return 0


def _upscale_alpha(alpha: object, scale: int) -> object:
    """Alpha (H, W) in [0, 1] upscaled bicubically and clipped."""
    import torch

    from n3net.degradations.bicubic import bicubic_upscale

    plane = torch.from_numpy(alpha)[None, None].float()  # type: ignore[arg-type]
    return bicubic_upscale(plane, scale)[0, 0].clamp(0.0, 1.0).numpy()
