"""`n3net evaluate`: benchmark denoisers on image folders under the authors' protocol."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from n3net.cli._errors import CliError
from n3net.cli._options import add_low_memory, apply_memory_policy

_PROTOCOL = (
    "grey images of each folder in sorted order (RGB -> L with (0.2989, 0.5870, 0.1140)); "
    "torch.manual_seed(seed) once per folder; noise = zeros_like(x).normal_(0, 1) * sigma / 255 "
    "drawn on the CPU, unclipped; whole image, batch 1, eval mode; psnr = 10 log10(1 / (mse + "
    "1e-10)) on the unclipped output, psnr_clipped and ssim (scikit-image) on the output "
    "clipped to [0, 1]"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="benchmark denoisers on image folders (PSNR/SSIM, the authors' protocol)",
        description="Add seeded Gaussian noise to every image of each folder exactly as the "
        "authors' test code did, denoise it in one pass, and report per-image and mean PSNR "
        "(on the unclipped and on the clipped output) and SSIM. One result per (model, data, "
        "sigma).",
        epilog="Example: n3net evaluate --model n3net-gray-sigma25 bm3d --sigma 25 "
        "--data set12 bsd68 --json results.json",
    )
    parser.add_argument(
        "--model",
        nargs="+",
        metavar="NAME_OR_FILE",
        help="pretrained names, .safetensors model files, or the classic baselines 'bm3d' and "
        "'nlm' (default: the shipped weights trained for each sigma); evaluating needs "
        "n3net[eval] (scikit-image for SSIM)",
    )
    parser.add_argument(
        "--sigma",
        nargs="+",
        type=float,
        default=[25.0],
        metavar="SIGMA",
        help="noise levels on the 0-255 scale (default: 25)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="image folders; a NAME that is not a folder here means $N3NET_DATA/NAME "
        "(e.g. set12 bsd68); with --task correspondences 'synthetic' or folders of .npz pairs",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="once-per-folder noise seed (default: 1234); with --task correspondences the "
        "synthetic split's seed (default: 2, the test split)",
    )
    parser.add_argument(
        "--task",
        choices=("denoise", "correspondences", "sr"),
        default="denoise",
        help="what the models do (default: denoise); correspondences: inlier classification and "
        "relative pose (docs/correspondences.md), with --data synthetic or folders of .npz pairs; "
        "sr: super-resolution, Y-channel PSNR/SSIM (docs/super-resolution.md)",
    )
    parser.add_argument(
        "--scale",
        nargs="+",
        type=int,
        metavar="SCALE",
        help="--task sr: the factors to evaluate, of 2, 3, 4 (default: 2 3 4)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=1000,
        help="--task correspondences: synthetic pairs to draw (default: 1000)",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=2000,
        help="--task correspondences: matches per synthetic pair (default: 2000)",
    )
    parser.add_argument(
        "--ransac-on-predicted",
        action="store_true",
        help="--task correspondences: also score every learned model as NAME+ransac, OpenCV "
        "RANSAC on the matches it predicts as inliers (a model name may also end in +ransac)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="cpu|cuda",
        help="where models run, e.g. cpu, cuda, cuda:1 (default: cpu)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument(
        "--force",
        action="store_true",
        help="evaluate a model file at a sigma other than the one its metadata says it was "
        "trained for (refused by default)",
    )
    add_low_memory(parser)
    parser.set_defaults(func=run)


def _unique(values: list[Any]) -> list[Any]:
    """Drop repeated values, keeping the first occurrence's order."""
    return list(dict.fromkeys(values))


def _number(value: float) -> float | int:
    """25.0 -> 25 for the JSON file and the tables; other values unchanged."""
    return int(value) if float(value).is_integer() else value


def _check_json_target(path: str | None, overwrite: bool) -> Path | None:
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        raise CliError(f"--json '{target}' is a directory")
    if target.exists() and not overwrite:
        raise FileExistsError(f"--json '{target}' exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder of --json '{target}' does not exist")
    return target


def _resolve_data(name: str) -> str:
    """A folder as given, else ``$N3NET_DATA/name``; a one-line error naming both."""
    if Path(name).exists():
        return name
    root = os.environ.get("N3NET_DATA")
    if root and (Path(root) / name).is_dir():
        return str(Path(root) / name)
    where = f" nor in $N3NET_DATA ({root})" if root else " (set N3NET_DATA to look it up there)"
    raise FileNotFoundError(f"data folder not found: '{name}'{where}")


def _jobs(args: argparse.Namespace, sigmas: list[float]) -> list[tuple[str, float]]:
    """The (model, sigma) pairs to run, resolving default models per sigma."""
    from n3net.inference import default_model

    if args.model is None:
        return [(default_model(sigma), sigma) for sigma in sigmas]
    return [(model, sigma) for model in _unique(args.model) for sigma in sigmas]


def _denoiser(model: str, sigma: float, device: str, force: bool) -> Any:
    """Load one model for the grey protocol, refusing colour models."""
    from n3net.inference import Denoiser, SigmaMismatchError

    try:
        denoiser = Denoiser(model, sigma, device, check_sigma=not force, memory_limit=None)
    except SigmaMismatchError as error:
        raise CliError(f"{error} (or pass --force to evaluate it anyway)") from None
    if denoiser.channels != 1:
        raise CliError(
            f"model {model} has {denoiser.channels} channels; the benchmark protocol is grey"
        )
    return denoiser


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    width = max([5, *(len(row["name"]) for row in rows)])
    print(title)
    print(f"  {'image':<{width}}  {'PSNR':>8}  {'clipped':>8}  {'SSIM':>7}  {'seconds':>8}")
    for row in rows:
        print(
            f"  {row['name']:<{width}}  {row['psnr']:8.3f}  {row['psnr_clipped']:8.3f}  "
            f"{row['ssim']:7.4f}  {row['seconds']:8.3f}"
        )


def _print_means(results: list[dict[str, Any]]) -> None:
    model_w = max([5, *(len(r["model"]) for r in results)])
    data_w = max([4, *(len(r["data"]) for r in results)])
    print("mean over images (PSNR on the unclipped output; clipped: output clipped to [0, 1])")
    print(
        f"  {'model':<{model_w}}  {'data':<{data_w}}  {'sigma':>5}  {'n':>4}  {'PSNR':>8}  "
        f"{'clipped':>8}  {'SSIM':>7}"
    )
    for r in results:
        s = r["summary"]
        print(
            f"  {r['model']:<{model_w}}  {r['data']:<{data_w}}  {r['sigma']:>5g}  "
            f"{s['n_images']:>4}  {s['mean_psnr']:8.3f}  {s['mean_psnr_clipped']:8.3f}  "
            f"{s['mean_ssim']:7.4f}"
        )


def _write_json(target: Path, document: dict[str, Any], overwrite: bool) -> None:
    """Write atomically, re-checking overwrite (the file may have appeared meanwhile)."""
    from n3net._files import atomic_write

    if target.exists() and not overwrite:
        raise FileExistsError(f"--json '{target}' exists; pass --overwrite to replace it")
    with atomic_write(target) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Evaluate every (model, data, sigma), print tables, optionally write JSON."""
    if args.task == "correspondences":
        from n3net.cli._evaluate_correspondences import run as run_correspondences

        return run_correspondences(args)
    if args.task == "sr":
        from n3net.cli._evaluate_sr import run as run_sr

        return run_sr(args)
    if args.seed is None:
        args.seed = 1234
    import torch

    from n3net import __version__
    from n3net._checks import require_extra, resolve_device
    from n3net.eval.benchmarks import evaluate_denoiser, protocol_files

    for sigma in args.sigma:
        if not sigma > 0 or sigma == float("inf"):
            raise CliError(f"--sigma must be > 0 (0-255 scale), got {sigma:g}")
    sigmas = _unique([float(s) for s in args.sigma])
    device = resolve_device(args.device)  # e.g. cuda absent: one line, before any work
    require_extra("skimage.metrics", "n3net evaluate (SSIM)")
    folders = _unique([_resolve_data(name) for name in args.data])
    for folder in folders:
        protocol_files(folder)  # fail on a missing or empty folder before any work
    target = _check_json_target(args.json, args.overwrite)
    if target is not None:
        from n3net._files import check_writable

        check_writable(target.parent)
    jobs = _jobs(args, sigmas)
    denoisers = {job: _denoiser(*job, args.device, args.force) for job in jobs}
    apply_memory_policy(args.low_memory, device)

    results: list[dict[str, Any]] = []
    for (model, sigma), denoiser in denoisers.items():
        for folder in folders:
            result = evaluate_denoiser(
                denoiser.as_function(),  # the whole image in one pass, as the protocol says
                folder,
                sigma,
                seed=args.seed,
                progress=True,
                device=args.device,
                description=f"{model} {Path(folder).name} sigma={sigma:g}",
            )
            entry = {"model": model, "data": folder, "sigma": _number(sigma), **result}
            _print_rows(f"{model} on {folder}, sigma {sigma:g}", entry["rows"])
            results.append(entry)
    _print_means(results)

    if target is not None:
        settings = {
            "models": _unique([model for model, _ in jobs]),
            "default_models": args.model is None,
            "sigmas": [_number(s) for s in sigmas],
            "data": folders,
            "seed": args.seed,
            "device": args.device,
            "protocol": _PROTOCOL,
            "n3net_version": __version__,
            "torch_version": torch.__version__,
        }
        _write_json(target, {"settings": settings, "results": results}, args.overwrite)
        print(f"wrote {target}")
    return 0
