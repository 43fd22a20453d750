"""`n3net denoise`: remove Gaussian noise from image files or folders.

Everything that can fail is checked before the first image is denoised: the inputs and their
sizes, the outputs (never overwritten without --overwrite, the folder writable), the model
(including a missing optional extra) and the tile size.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from n3net.cli._errors import CliError
from n3net.cli._options import add_low_memory, apply_memory_policy


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
        help="denoise N x N tiles, each with the model's receptive-field radius as context on "
        "every side (112 px for N3Net, 17 for DnCNN-17), so the result equals the whole-image "
        "one; N must be at least the receptive field (225 px for N3Net, 35 for DnCNN-17); "
        "0 runs whole images (default: tiles only when an image exceeds --memory)",
    )
    parser.add_argument(
        "--context",
        "--overlap",
        dest="context",
        type=int,
        metavar="PX",
        help="context kept around each tile instead of the full receptive field: faster but "
        "not exact (N3Net: 64 px moved PSNR by up to 0.0015 dB in our checks, 48 px by 0.06)",
    )
    parser.add_argument(
        "--memory",
        type=float,
        default=1024.0,
        metavar="MB",
        help="memory one forward pass may use before an image is tiled automatically "
        "(default: 1024; a 3000x2000 photo then peaks below 2 GB)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_low_memory(parser)
    parser.set_defaults(func=run)


def _expand(inputs: list[str]) -> tuple[list[Path], bool]:
    """Return the input image files and whether any input was a folder."""
    from n3net.data.imageio import IMAGE_EXTENSIONS, list_images

    files: list[Path] = []
    any_folder = False
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            any_folder = True
            images = list_images(path)
            if not images:
                kinds = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
                raise CliError(f"folder '{path}' holds no images ({kinds})")
            files.extend(images)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: '{path}'")
    return files, any_folder


def _targets(files: list[Path], output: Path, folder_out: bool) -> list[Path]:
    """One output path per input; a folder output keeps the input file names."""
    from n3net.data.imageio import IMAGE_EXTENSIONS

    if not folder_out:
        if output.suffix.lower() not in IMAGE_EXTENSIONS:
            raise CliError(
                f"output '{output}' needs an image extension ({', '.join(IMAGE_EXTENSIONS)}), "
                "or end it with '/' to make it a folder"
            )
        return [output]
    if output.exists() and not output.is_dir():
        raise CliError(f"output '{output}' is a file, but several inputs need a folder")
    targets = [output / path.name for path in files]
    seen: dict[Path, Path] = {}
    for source, target in zip(files, targets, strict=True):
        if target in seen:
            raise CliError(f"inputs '{seen[target]}' and '{source}' would both write '{target}'")
        seen[target] = source
    return targets


def _check_targets(files: list[Path], targets: list[Path], overwrite: bool) -> None:
    """Refuse self-overwrites, existing outputs without --overwrite, unwritable folders."""
    from n3net._files import check_writable

    for source, target in zip(files, targets, strict=True):
        if target.exists() and target.resolve() == source.resolve():
            raise CliError(f"output '{target}' is its own input; choose another output")
        if target.exists() and not overwrite:
            raise FileExistsError(f"output '{target}' exists; pass --overwrite to replace it")
    for folder in dict.fromkeys(target.parent for target in targets):
        check_writable(folder)


def _check_options(args: argparse.Namespace) -> None:
    if args.output is None:
        raise CliError("-o/--output is required (a file for one input, else a folder)")
    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise CliError(f"--sigma must be > 0 (0-255 scale), got {args.sigma:g}")
    if args.tile is not None and args.tile < 0:
        raise CliError(f"--tile must be a number of pixels >= 0, got {args.tile}")
    if args.context is not None and args.context < 0:
        raise CliError(f"--context must be >= 0, got {args.context}")
    if not (math.isfinite(args.memory) and args.memory > 0):
        raise CliError(f"--memory must be a number of megabytes > 0, got {args.memory:g}")


def run(args: argparse.Namespace) -> int:
    """Denoise every input and write it beside the others in the output."""
    _check_options(args)
    files, any_folder = _expand(args.inputs)
    output = Path(args.output)
    folder_out = (
        any_folder or len(files) > 1 or output.is_dir() or args.output.endswith(("/", "\\"))
    )
    targets = _targets(files, output, folder_out)
    _check_targets(files, targets, args.overwrite)

    from tqdm import tqdm

    from n3net.data.imageio import image_size, read_image, write_image
    from n3net.inference import Denoiser

    denoiser = Denoiser(args.model, args.sigma, args.device, memory_limit=args.memory)
    denoiser.check_tile(args.tile, args.context)
    for source in files:  # image headers only: a too-small image fails before any work
        try:
            denoiser.check_size(*image_size(source))
        except ValueError as error:
            raise CliError(f"'{source}': {error}") from None
    apply_memory_policy(args.low_memory, denoiser.device)
    if folder_out:
        output.mkdir(parents=True, exist_ok=True)
    for folder in dict.fromkeys(target.parent for target in targets):
        folder.mkdir(parents=True, exist_ok=True)  # -o new/dir/out.png makes new/dir
    pairs = list(zip(files, targets, strict=True))
    for source, target in tqdm(pairs, desc="denoise", unit="img", disable=len(files) < 2):
        image = read_image(source)
        clean = denoiser(image.data, tile=args.tile, context=args.context, progress=True)
        write_image(
            target, clean, image.alpha, image.bit_depth, overwrite=args.overwrite, info=image.info
        )
    sigma = "unknown" if denoiser.sigma is None else f"{denoiser.sigma:g}"
    where = output if folder_out else targets[0]
    print(f"denoised {len(files)} image(s) with {denoiser.name} (sigma {sigma}) -> {where}")
    return 0
