"""`n3net denoise`: remove Gaussian noise from image files or folders.

Everything that can fail is checked before the first image is denoised: the inputs and their
sizes, the outputs (never overwritten without --overwrite, the folder writable), the model
(including a missing optional extra) and the tile size.
"""

from __future__ import annotations

import argparse
import math

from n3net.cli._errors import CliError
from n3net.cli._images import (
    add_input_output,
    add_run_options,
    check_common_options,
    plan_outputs,
    process_images,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `denoise` subcommand."""
    parser = subparsers.add_parser(
        "denoise",
        help="denoise image files or folders with a trained model",
        description="Denoise PNG, JPEG or TIFF images (8- or 16-bit, grey or RGB, alpha kept "
        "unchanged, EXIF orientation applied). Outputs keep the input's bit depth. A grey model "
        "denoises RGB images channel by channel; a colour (3-channel) model denoises RGB "
        "jointly. Large images are processed in tiles automatically (see --memory).",
        epilog="Examples: n3net denoise noisy.png -o out/clean.png --sigma 25; "
        "n3net denoise photos/ -o out/denoised/ --tile 512",
    )
    add_input_output(parser)
    parser.add_argument(
        "--sigma",
        type=float,
        help="noise level on the 0-255 scale whatever the bit depth; picks the weights trained "
        "for it (default: 25, or the --model file's own sigma)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_FILE",
        help="pretrained name, .safetensors model file, or a classic baseline 'bm3d' / 'nlm' "
        "(needs n3net[eval]; default: the shipped weights for --sigma)",
    )
    add_run_options(
        parser,
        tile_help="denoise N x N tiles, each with the model's receptive-field radius as context "
        "on every side (112 px for N3Net, 17 for DnCNN-17), so the result equals the "
        "whole-image one; N must be at least the receptive field (225 px for N3Net, 35 for "
        "DnCNN-17); 0 runs whole images (default: tiles only when an image exceeds --memory)",
        context_help="context kept around each tile instead of the full receptive field: faster "
        "but not exact (N3Net: 64 px moved PSNR by up to 0.0015 dB in our checks, 48 px by 0.06)",
        memory_help="memory one forward pass may use before an image is tiled automatically "
        "(default: 1024; a 3000x2000 photo then peaks below 2 GB)",
        context_aliases=("--overlap",),
    )
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    check_common_options(args)
    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise CliError(f"--sigma must be > 0 (0-255 scale), got {args.sigma:g}")


def run(args: argparse.Namespace) -> int:
    """Denoise every input and write it beside the others in the output."""
    _check_options(args)
    plan = plan_outputs(args.inputs, args.output, args.overwrite)

    from n3net.inference import Denoiser

    denoiser = Denoiser(args.model, args.sigma, args.device, memory_limit=args.memory)
    process_images(plan, denoiser, args, verb="denoise")
    sigma = "unknown" if denoiser.sigma is None else f"{denoiser.sigma:g}"
    print(
        f"denoised {len(plan.files)} image(s) with {denoiser.name} (sigma {sigma}) -> {plan.where}"
    )
    return 0
