"""`n3net import-official`: convert the authors' denoising checkpoint into an n3net model file."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `import-official` subcommand."""
    parser = subparsers.add_parser(
        "import-official",
        help="convert the authors' pretrained N3Net denoising checkpoint (.t7) to safetensors",
        description="Read one of the authors' Gaussian-denoising checkpoints "
        "(pretrained_sigma{25,50,70}/checkpoint/051_ckpt.t7) without running pickled code, check "
        "its 140 tensors, and write an n3net model file that `n3net denoise --model FILE` and "
        "`n3net evaluate --model FILE` use. Its outputs equal the authors' network's.",
    )
    parser.add_argument("checkpoint", type=Path, help="the authors' .t7 checkpoint")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="model file to write (.safetensors)"
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level (0-255) the weights were trained for, stored in the file; "
        "default: read from a 'sigmaNN' part of the checkpoint's path, if any",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=run)


def _sigma_from_path(path: Path) -> float | None:
    found = re.findall(r"sigma[_-]?(\d+(?:\.\d+)?)", str(path), flags=re.IGNORECASE)
    return float(found[-1]) if found else None


def run(args: argparse.Namespace) -> int:
    """Import the checkpoint and report what was written."""
    from n3net.models.official import import_official

    sigma = args.sigma
    note = ""
    if sigma is None:
        sigma = _sigma_from_path(args.checkpoint)
        if sigma is not None:
            note = " (from the checkpoint's path; set --sigma to change)"
    model = import_official(args.checkpoint, args.output, sigma=sigma, overwrite=args.overwrite)
    n_params = sum(p.numel() for p in model.parameters())
    sigma_text = f"sigma {sigma:g}{note}" if sigma is not None else "sigma unknown (use --sigma)"
    print(f"wrote {args.output}: n3net, {n_params:,} parameters, {sigma_text}")
    return 0
