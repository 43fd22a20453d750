"""`n3net models`: list the architectures and the trained weights shipped with n3net."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list architectures and shipped trained weights",
        description="List the registered architectures, the classic baselines that need no "
        "weights (bm3d, nlm) and the trained weights shipped in the package, by task: "
        "denoising (name, architecture, sigma, training budget, validation and BSD68 PSNR; the "
        "default for each sigma is the one with the best BSD68 PSNR) and super-resolution "
        "(name, architecture, scales, training budget, validation and Set5 Y-PSNR) and "
        "correspondence classification (name, architecture, training budget, validation and "
        "synthetic-test pose mAP@20).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _task(meta: dict[str, str]) -> str:
    """The task of a shipped model file: its ``task`` entry, else its architecture's."""
    from n3net.models import arch_info

    if meta.get("task"):
        return meta["task"]
    try:
        return arch_info(meta.get("n3net_arch", "")).task
    except ValueError:
        return "denoise"


def _sr_row(name: str, meta: dict[str, str], default: str) -> dict[str, object]:
    """One shipped super-resolution model: budget, validation and Set5 Y-PSNR per scale."""
    scales = [s for s in meta.get("scales", "").split(",") if s]
    return {
        "name": name,
        "arch": meta.get("n3net_arch", "?"),
        "scales": scales,
        "steps": meta.get("steps", "?"),
        "minutes": meta.get("minutes", "?"),
        "hardware": meta.get("hardware", "?"),
        "val_psnr": meta.get("val_psnr", "?"),
        "set5_psnr": {s: meta.get(f"set5_x{s}_psnr", "?") for s in scales},
        "default": name == default,
    }


def _correspondences_row(name: str, meta: dict[str, str]) -> dict[str, object]:
    """One shipped correspondence model: budget, validation and synthetic-test pose mAP."""
    return {
        "name": name,
        "arch": meta.get("n3net_arch", "?"),
        "steps": meta.get("steps", "?"),
        "minutes": meta.get("minutes", "?"),
        "hardware": meta.get("hardware", "?"),
        "val_map": meta.get("val_map", "?"),
        "synthetic_map20": meta.get("synthetic_map20", "?"),
        "test_split": meta.get("test_split", "?"),
    }


def run(args: argparse.Namespace) -> int:
    import json

    from n3net.inference import default_model, trained_models
    from n3net.inference.upscaler import default_sr_model
    from n3net.models import arch_info, list_architectures, list_pretrained, model_metadata

    sigmas = {sigma for sigma in trained_models().values() if sigma is not None}
    defaults = {default_model(sigma) for sigma in sigmas}
    sr_default = default_sr_model()
    rows, sr_rows, corr_rows = [], [], []
    for name in list_pretrained():
        meta = model_metadata(name)
        if _task(meta) == "sr":
            sr_rows.append(_sr_row(name, meta, sr_default))
            continue
        if _task(meta) == "correspondences":
            corr_rows.append(_correspondences_row(name, meta))
            continue
        rows.append(
            {
                "name": name,
                "arch": meta.get("n3net_arch", "?"),
                "sigma": meta.get("sigma", "?"),
                "steps": meta.get("steps", "?"),
                "minutes": meta.get("minutes", "?"),
                "hardware": meta.get("hardware", "?"),
                "val_psnr": meta.get("val_psnr", "?"),
                "bsd68_psnr": meta.get("bsd68_psnr", "?"),
                "default": name in defaults,
            }
        )
    no_weights = [name for name in list_architectures() if not arch_info(name).needs_weights]
    pose = [name for name in no_weights if arch_info(name).task == "correspondences"]
    sr = [name for name in no_weights if arch_info(name).task == "sr"]
    classic = [name for name in no_weights if name not in pose and name not in sr]
    if args.json:
        document = {
            "architectures": list_architectures(),
            "classic": classic,
            "pose_baselines": pose,
            "sr_baselines": sr,
            "pretrained": rows,
            "pretrained_sr": sr_rows,
            "pretrained_correspondences": corr_rows,
        }
        print(json.dumps(document, indent=2))
        return 0
    print("architectures: " + ", ".join(list_architectures()))
    print(
        "classic baselines (no weights; n3net denoise/evaluate --model NAME, need n3net[eval]): "
        + ", ".join(classic)
    )
    print(
        "pose baselines (no weights; n3net evaluate --task correspondences --model NAME; "
        "ransac, ransac-10k and lmeds need n3net[geometry]): " + ", ".join(pose)
    )
    print(
        "super-resolution baselines (no weights; n3net upscale/evaluate --task sr --model NAME, "
        "need n3net[sr]): " + ", ".join(sr)
    )
    print("trained weights (n3net denoise --model NAME; model cards in n3net/models/weights/):")
    if not rows:
        print("  (none)")
    for r in rows:
        print(
            f"  {r['name']:<24} {r['arch']:<8} sigma {r['sigma']:<4} {r['steps']} steps in "
            f"{r['minutes']} min on {r['hardware']}, validation {r['val_psnr']} dB, "
            f"BSD68 {r['bsd68_psnr']} dB" + (" (default)" if r["default"] else "")
        )
    print(
        "super-resolution weights (n3net upscale/evaluate --task sr --model NAME; "
        + ("none shipped yet, the default is bicubic)" if not sr_rows else "need n3net[sr]):")
    )
    for r in sr_rows:
        scales = "/".join(f"x{s}" for s in r["scales"])
        set5 = " / ".join(r["set5_psnr"].values())
        print(
            f"  {r['name']:<24} {r['arch']:<8} scales {scales} {r['steps']} steps in "
            f"{r['minutes']} min on {r['hardware']}, validation {r['val_psnr']} dB, "
            f"Set5 {scales} {set5} dB" + (" (default)" if r["default"] else "")
        )
    print(
        "correspondence weights (n3net evaluate --task correspondences --model NAME): "
        + ("none shipped yet" if not corr_rows else "")
    )
    for r in corr_rows:
        print(
            f"  {r['name']:<24} {r['arch']:<8} {r['steps']} steps in {r['minutes']} min on "
            f"{r['hardware']}, validation mAP@20 {r['val_map']}, synthetic test mAP@20 "
            f"{r['synthetic_map20']} ({r['test_split']})"
        )
    return 0
