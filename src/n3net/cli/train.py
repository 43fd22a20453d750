"""`n3net train`: train a Gaussian denoiser (paper §5.1 protocol), resumable and multi-process.

Examples:
    n3net train --arch dncnn --sigma 25 --max-minutes 60 --out runs/dncnn25
    n3net train --config my.toml --set train.lr=5e-4 --resume auto
    torchrun --nproc_per_node 2 -m n3net train --arch n3net --device cpu --max-steps 1000
"""

from __future__ import annotations

import argparse
import json

_EPILOG = """\
Configuration: dataclass defaults (the paper's protocol) < --preset < --config FILE.toml <
--set section.key=value < the flags above. Sections: model (arch, kwargs), data (preset, root,
train_dirs, val_images, val_dir, crop_size, crops_per_image, sigma, sampler), train (batch_size,
lr, lr_final, epochs, max_steps, max_minutes, weight_decay, betas, seed, amp, channels_last,
device, workers, val_every, ckpt_every, ckpt_minutes, log_every, out_dir, tensorboard, progress,
sync_bn). --print-config shows the result. Data folders are relative to data.root ($N3NET_DATA or
../shared/data). The run folder gets last.pt (checkpoint), log.csv, tensorboard/, curves.png,
config.json, summary.json, last.safetensors and model.safetensors (best validation weights).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a denoiser (paper protocol; resumable; torchrun for several processes)",
        description="Train a Gaussian denoiser with the paper's protocol: random crops with flips "
        "and rotations, noise added on the fly, Adam, exponential lr decay, validation on held-out "
        "training images, atomic checkpoints that resume exactly.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file with [model] [data] [train]")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one value (TOML syntax; repeatable), e.g. model.kwargs.depth=17",
    )
    parser.add_argument("--preset", choices=("paper", "dncnn"), help="data preset")
    parser.add_argument("--arch", help="architecture (e.g. dncnn, n3net, n3net-light)")
    parser.add_argument("--sigma", type=float, help="noise level on the 0-255 scale")
    parser.add_argument("--data-root", help="folder that data.train_dirs are relative to")
    parser.add_argument("--max-minutes", type=float, help="time budget; lr follows elapsed time")
    parser.add_argument("--max-steps", type=int, help="step budget (replaces train.epochs)")
    parser.add_argument("--batch-size", type=int, help="crops per step over all processes")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("none", "bf16"), help="bf16 autocast")
    parser.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, help="channels-last memory"
    )
    parser.add_argument("--sampler", choices=("device", "loader"), help="where crops are cut")
    parser.add_argument("--workers", type=int, help="DataLoader workers (sampler loader)")
    parser.add_argument("--seed", type=int, help="seed of initialisation and data")
    parser.add_argument("--out", help="run folder (train.out_dir)")
    parser.add_argument(
        "--resume", metavar="PATH|auto", help="continue a checkpoint; auto: OUT/last.pt if any"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace finished weights in the run folder"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    return {
        "model": {"arch": args.arch},
        "data": {
            "preset": args.preset,
            "sigma": args.sigma,
            "root": args.data_root,
            "sampler": args.sampler,
        },
        "train": {
            "max_minutes": args.max_minutes,
            "max_steps": args.max_steps,
            "batch_size": args.batch_size,
            "device": args.device,
            "amp": args.amp,
            "channels_last": args.channels_last,
            "workers": args.workers,
            "seed": args.seed,
            "out_dir": args.out,
        },
    }


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    from n3net.train.config import resolve_config

    config = resolve_config(args.config, args.sets, _overrides(args))
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from n3net.train.loop import train

    train(config, resume=args.resume, overwrite=args.overwrite)
    return 0
