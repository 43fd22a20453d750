"""`n3net evaluate --task sr`: super-resolution models on image folders, Y-channel PSNR / SSIM.

One result per (model, data, scale), in the JSON shape of the denoising results with ``scale``
in place of ``sigma``; the protocol is :mod:`n3net.eval.sr`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from n3net.cli._errors import CliError
from n3net.cli._options import apply_memory_policy

_SCALES = (2, 3, 4)


def _scales(args: argparse.Namespace) -> list[int]:
    from n3net.cli.evaluate import _unique

    scales = _unique(list(args.scale or _SCALES))
    for scale in scales:
        if scale not in _SCALES:
            raise CliError(f"--scale must be among 2, 3, 4, got {scale}")
    return scales


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    width = max([5, *(len(row["name"]) for row in rows)])
    print(title)
    print(f"  {'image':<{width}}  {'Y-PSNR':>8}  {'SSIM':>7}  {'seconds':>8}")
    for row in rows:
        values = f"{row['psnr']:8.3f}  {row['ssim']:7.4f}  {row['seconds']:8.3f}"
        print(f"  {row['name']:<{width}}  {values}")


def _print_means(results: list[dict[str, Any]]) -> None:
    model_w = max([5, *(len(r["model"]) for r in results)])
    data_w = max([4, *(len(r["data"]) for r in results)])
    print("mean over images (Y channel, scale pixels shaved)")
    columns = f"{'scale':>5}  {'n':>4}  {'Y-PSNR':>8}  {'SSIM':>7}"
    print(f"  {'model':<{model_w}}  {'data':<{data_w}}  {columns}")
    for r in results:
        s = r["summary"]
        print(
            f"  {r['model']:<{model_w}}  {r['data']:<{data_w}}  {r['scale']:>5}  "
            f"{s['n_images']:>4}  {s['mean_psnr']:8.3f}  {s['mean_ssim']:7.4f}"
        )


def run(args: argparse.Namespace) -> int:
    """Evaluate every (model, data, scale), print tables, optionally write JSON."""
    import torch

    from n3net import __version__
    from n3net._checks import require_extra, resolve_device
    from n3net.cli.evaluate import _check_json_target, _resolve_data, _unique, _write_json
    from n3net.eval.benchmarks import protocol_files

    scales = _scales(args)
    device = resolve_device(args.device)  # e.g. cuda absent: one line, before any work
    require_extra("skimage.metrics", "n3net evaluate (SSIM)")
    require_extra("resize_right", "n3net evaluate --task sr", extra="sr")
    folders = _unique([_resolve_data(name) for name in args.data])
    for folder in folders:
        protocol_files(folder)  # fail on a missing or empty folder before any work
    target = _check_json_target(args.json, args.overwrite)
    if target is not None:
        from n3net._files import check_writable

        check_writable(target.parent)

    from n3net.eval.sr import PROTOCOL_TEXT, evaluate_upscaler
    from n3net.inference.upscaler import Upscaler, default_sr_model

    models = _unique(args.model or [default_sr_model()])
    upscalers = {
        (model, scale): Upscaler(model, scale, args.device, memory_limit=None)
        for model in models
        for scale in scales
    }
    apply_memory_policy(args.low_memory, device)

    results: list[dict[str, Any]] = []
    for (model, scale), upscaler in upscalers.items():
        for folder in folders:
            result = evaluate_upscaler(
                lambda lr, up=upscaler: up.upscale_y(lr, tile=0),  # whole images, as the protocol
                folder,
                scale,
                progress=True,
                device=args.device,
                description=f"{model} {Path(folder).name} x{scale}",
            )
            entry = {"model": model, "data": folder, "scale": scale, **result}
            _print_rows(f"{model} on {folder}, x{scale}", entry["rows"])
            results.append(entry)
    _print_means(results)

    if target is not None:
        settings = {
            "task": "sr",
            "models": models,
            "default_models": args.model is None,
            "scales": scales,
            "data": folders,
            "device": args.device,
            "protocol": PROTOCOL_TEXT,
            "n3net_version": __version__,
            "torch_version": torch.__version__,
        }
        _write_json(target, {"settings": settings, "results": results}, args.overwrite)
        print(f"wrote {target}")
    return 0
