"""What `n3net denoise` and `n3net upscale` share: image files in, one image file out per input.

The arguments (inputs, ``-o``, ``--device``, tiling, ``--memory``, ``--overwrite``,
``--low-memory``), their checks, the expansion of folders, the output paths and their checks,
and the loop that reads, processes and writes every image. Every check runs before the first
image is processed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from n3net.cli._errors import CliError
from n3net.cli._options import add_low_memory, apply_memory_policy

if TYPE_CHECKING:  # the CLI imports numpy and torch only once a subcommand runs
    import numpy as np
    import torch


class ImageModel(Protocol):
    """What the loop needs of a `Denoiser` or an `Upscaler`."""

    name: str
    device: torch.device

    def check_tile(self, tile: int | None, context: int | None) -> None: ...

    def check_size(self, height: int, width: int) -> None: ...

    def __call__(
        self, image: np.ndarray, *, tile: int | None, context: int | None, progress: bool
    ) -> np.ndarray: ...


def add_input_output(parser: argparse.ArgumentParser) -> None:
    """``IN...`` and ``-o/--output``."""
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


def add_run_options(
    parser: argparse.ArgumentParser,
    *,
    tile_help: str,
    context_help: str,
    memory_help: str,
    context_aliases: tuple[str, ...] = (),
) -> None:
    """``--device``, ``--tile``, ``--context``, ``--memory``, ``--overwrite``, ``--low-memory``."""
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="cpu|cuda",
        help="where the model runs, e.g. cpu, cuda, cuda:1 (default: cpu)",
    )
    parser.add_argument("--tile", type=int, metavar="N", help=tile_help)
    parser.add_argument(
        "--context", *context_aliases, dest="context", type=int, metavar="PX", help=context_help
    )
    parser.add_argument("--memory", type=float, default=1024.0, metavar="MB", help=memory_help)
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_low_memory(parser)


def check_common_options(args: argparse.Namespace) -> None:
    """The checks of `add_input_output` and `add_run_options`' values."""
    if args.output is None:
        raise CliError("-o/--output is required (a file for one input, else a folder)")
    if args.tile is not None and args.tile < 0:
        raise CliError(f"--tile must be a number of pixels >= 0, got {args.tile}")
    if args.context is not None and args.context < 0:
        raise CliError(f"--context must be >= 0, got {args.context}")
    if not (math.isfinite(args.memory) and args.memory > 0):
        raise CliError(f"--memory must be a number of megabytes > 0, got {args.memory:g}")


@dataclass(frozen=True)
class Plan:
    """Input files, one target per input, and where the outputs go (printed at the end)."""

    files: list[Path]
    targets: list[Path]
    where: Path


def plan_outputs(inputs: list[str], output_text: str, overwrite: bool) -> Plan:
    """Expand the inputs and map each to its output, refusing anything that would go wrong."""
    files, any_folder = _expand(inputs)
    output = Path(output_text)
    folder_out = (
        any_folder or len(files) > 1 or output.is_dir() or output_text.endswith(("/", "\\"))
    )
    targets = _targets(files, output, folder_out)
    _check_targets(files, targets, overwrite)
    return Plan(files, targets, output if folder_out else targets[0])


def process_images(
    plan: Plan,
    model: ImageModel,
    args: argparse.Namespace,
    *,
    verb: str,
    alpha: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """Check the tile and every image's size, then read, process and write each image.

    ``alpha`` maps an input's alpha plane to the output's (default: unchanged).
    """
    from tqdm import tqdm

    from n3net.data.imageio import image_size, read_image, write_image

    model.check_tile(args.tile, args.context)
    for source in plan.files:  # image headers only: a too-small image fails before any work
        try:
            model.check_size(*image_size(source))
        except ValueError as error:
            raise CliError(f"'{source}': {error}") from None
    apply_memory_policy(args.low_memory, model.device)
    for folder in dict.fromkeys(target.parent for target in plan.targets):
        folder.mkdir(parents=True, exist_ok=True)  # -o new/dir/out.png makes new/dir
    pairs = list(zip(plan.files, plan.targets, strict=True))
    for source, target in tqdm(pairs, desc=verb, unit="img", disable=len(pairs) < 2):
        image = read_image(source)
        result = model(image.data, tile=args.tile, context=args.context, progress=True)
        image_alpha = image.alpha
        if image_alpha is not None and alpha is not None:
            image_alpha = alpha(image_alpha)
        write_image(
            target, result, image_alpha, image.bit_depth, overwrite=args.overwrite, info=image.info
        )


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
