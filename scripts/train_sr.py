"""Train VDSR and N3Net-SR with the same steps, evaluate them and bicubic, print the tables.

Usage (from the repository root; ``scripts/train_sr.sh`` wraps it)::

    python scripts/train_sr.py OUT_DIR STEPS [DEVICE] [--data DIR] [--pack FILE.tar] ...
    python scripts/train_sr.py --stage .gpu/sr-data       # the data a GPU call carries

One call does everything, resuming what an earlier call with the same OUT_DIR left:

1. ``n3net train --task sr`` for each of ``--archs`` (vdsr, n3net-sr) with the same STEPS, seed
   and batches (the batches are a function of the seed and the step), the task's default
   optimisation (Adam, ``--preset budget``; ``--preset paper`` for the paper's SGD), batch 8
   on a CPU and 32 on CUDA, bf16 autocast and channels-last where the device computes bf16
   natively (``--amp auto``; float32 elsewhere), into ``OUT_DIR/<arch>/``
   (``model.safetensors`` = best validation weights, ``last.safetensors``, ``last.pt``,
   ``log.csv``, ``curves.png``, ``summary.json``, ``config.json``, ``train.log``). On a CPU
   the two runs go side by side with one thread each (``--jobs``, ``--threads``); on CUDA one
   after the other. A run killed half-way resumes from its last checkpoint (``--ckpt-minutes``)
   when the same command runs again; a finished one is skipped.
2. ``n3net evaluate --task sr`` of bicubic and both models on Set5, Set14 and B100 at ×2, ×3
   and ×4: ``OUT_DIR/eval/<model>.json`` and its printout ``.txt`` (existing ones are kept).
3. ``OUT_DIR/results.md``: Y-PSNR / SSIM next to the published numbers and the N3Net-SR − VDSR
   gap per data set and scale (``scripts/results_table.py``), printed too;
   ``OUT_DIR/curves-sr.png``: both validation curves against steps and minutes.
4. With ``--pack FILE.tar``: OUT_DIR without the ``*.pt`` checkpoints, rewritten after every
   stage, so that a call stopped at a time limit still brings its results back.

Data (``--data``, default ``$N3NET_DATA``): a folder with ``t91/`` and ``bsd200/`` (training),
``bsds500_test/`` (validation: its first 8 images) and ``set5/``, ``set14/``, ``b100/``. A GPU
machine has none of it: ``--stage DIR`` writes the exact training luminance as 8-bit grey PNGs
(the task reads them back unchanged), the first validation images the same way, the test sets
as they are and the ``resize_right`` package (``DIR/pylib``, put on the path of every run), in
about 34 MiB, to carry with the call. ``DIR/pylib`` is used whenever ``--data`` has one.

The device call (about 9 minutes at most; see docs/super-resolution.md for STEPS)::

    scripts/train_sr.sh /tmp/sr 5000 cuda --data .gpu/sr-data --pack $OUT/sr.tar
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TRAIN_DIRS = ("t91", "bsd200")
VAL_DIR = "bsds500_test"
TEST_SETS = ("set5", "set14", "b100")
ARCHS = ("vdsr", "n3net-sr")


def _child_env(data: Path, threads: int | None) -> dict[str, str]:
    """The environment of every n3net process: src/ and DATA/pylib on the path, threads."""
    env = dict(os.environ)
    paths = [str(REPO / "src")]
    if (data / "pylib").is_dir():
        paths.append(str((data / "pylib").resolve()))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def resolve_device(device: str) -> str:
    """``auto`` means cuda when torch sees a GPU, else cpu; other names pass unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _device_text(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device}: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    return f"{device} ({os.cpu_count()} cores)"


def train_command(args: argparse.Namespace, arch: str, python: str) -> list[str]:
    """The ``n3net train`` command line of one arch (the same steps, seed and data for all)."""
    command = [
        python, "-m", "n3net", "train", "--task", "sr", "--arch", arch,
        "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--seed", str(args.seed),
        "--device", args.device, "--amp", args.amp,
        "--channels-last" if args.channels_last else "--no-channels-last",
        "--data-root", str(args.data), "--val-every", str(args.val_every),
        "--log-every", str(args.log_every), "--ckpt-every", "0",
        "--ckpt-minutes", str(args.ckpt_minutes), "--no-tensorboard", "--progress", "lines",
        "--out", str(args.out_dir / arch), "--resume", "auto",
    ]  # fmt: skip
    if args.preset is not None:
        command += ["--preset", args.preset]
    if args.optimizer is not None:
        command += ["--optimizer", args.optimizer]
    if args.max_minutes is not None:
        command += ["--max-minutes", str(args.max_minutes)]
    for assignment in args.set:
        command += ["--set", assignment]
    return command


def _finished(run_dir: Path, steps: int) -> bool:
    """True when ``run_dir`` holds a finished run; refuse one made for another step count."""
    if not (run_dir / "model.safetensors").is_file() or not (run_dir / "summary.json").is_file():
        return False
    config = json.loads((run_dir / "config.json").read_text())
    if config["train"]["max_steps"] != steps:
        raise SystemExit(
            f"error: {run_dir} holds a finished run of {config['train']['max_steps']} steps, "
            f"not {steps}; use another OUT_DIR"
        )
    return True


def run_jobs(jobs: Sequence[tuple[str, list[str], Path]], env: dict, parallel: int) -> list[str]:
    """Run ``(name, command, log)`` jobs, at most ``parallel`` at once; return the failed names.

    With one job at a time its output goes to the console and the log; side by side, to the
    logs only, and each job's last line is printed when it ends.
    """
    failed: list[str] = []
    pending = list(jobs)
    running: list[tuple[str, subprocess.Popen, Path, float, object]] = []
    while pending or running:
        while pending and len(running) < parallel:
            name, command, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"== {name}: start {time.strftime('%H:%M:%S')}, log {log}", flush=True)
            handle = log.open("a")
            if parallel == 1:
                process = subprocess.Popen(
                    command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True,
                )  # fmt: skip
                assert process.stdout is not None
                for line in process.stdout:
                    sys.stdout.write(line)
                    handle.write(line)
                process.wait()
            else:
                process = subprocess.Popen(
                    command, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
                )
            running.append((name, process, log, time.time(), handle))
        for entry in list(running):
            name, process, log, start, handle = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            handle.close()  # type: ignore[attr-defined]
            lines = log.read_text().strip().splitlines()
            if parallel > 1 and lines:
                print(f"   {name}: {lines[-1]}", flush=True)
            status = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
            print(f"== {name}: {status} in {time.time() - start:.0f} s", flush=True)
            if process.returncode != 0:
                failed.append(name)
        if running:
            time.sleep(1.0)
    return failed


def pack(out_dir: Path, target: Path | None) -> None:
    """Write ``target`` (a .tar of ``out_dir`` without ``*.pt`` files) atomically."""
    if target is None or not out_dir.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        tar.add(
            out_dir, arcname=out_dir.name, filter=lambda t: None if t.name.endswith(".pt") else t
        )
    partial.replace(target)
    print(f"packed {out_dir} (without checkpoints) into {target} "
          f"({target.stat().st_size / 2**20:.1f} MiB)", flush=True)  # fmt: skip


def plot_validation(runs: dict[str, Path], png: Path) -> bool:
    """Plot the runs' validation Y-PSNR against steps and minutes (False without matplotlib)."""
    import csv

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, run in runs.items():
        if not (run / "log.csv").is_file():
            continue
        with (run / "log.csv").open() as file:
            rows = [r for r in csv.DictReader(file) if r.get("val_psnr")]
        steps = [int(r["step"]) for r in rows]
        minutes = [float(r["elapsed_s"]) / 60 for r in rows]
        values = [float(r["val_psnr"]) for r in rows]
        by_step.plot(steps, values, marker="o", ms=3, label=name)
        by_time.plot(minutes, values, marker="o", ms=3, label=name)
    by_step.set(xlabel="step", ylabel="validation Y-PSNR, mean of the scales (dB)")
    by_time.set(xlabel="training minutes")
    for axis in (by_step, by_time):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return True


def stage(target: Path, data: Path, val_images: int = 8) -> int:
    """Write the carried data folder of a GPU call (see the module docstring); return 0 or 2."""
    from PIL import Image

    from n3net.data.imageio import list_images
    from n3net.eval.sr import load_luminance

    for name in (*TRAIN_DIRS, VAL_DIR, *TEST_SETS):
        if not (data / name).is_dir():
            print(f"error: {data / name} not found (set --data or N3NET_DATA)", file=sys.stderr)
            return 2
    try:
        import resize_right
    except ImportError:
        print("error: --stage needs resize_right (pip install 'n3net[sr]')", file=sys.stderr)
        return 2
    if target.exists():
        shutil.rmtree(target)
    for name in (*TRAIN_DIRS, VAL_DIR):
        (target / name).mkdir(parents=True)
        files = list_images(data / name)
        stems = [path.stem for path in files]
        if len(set(stems)) != len(stems):
            print(f"error: {data / name} has two images of one name", file=sys.stderr)
            return 2
        for path in files[:val_images] if name == VAL_DIR else files:
            # The task rounds the luminance to 8 bits: a grey PNG of it reads back unchanged.
            grey = (load_luminance(path)[0, 0].numpy() * 255).round().astype(np.uint8)
            Image.fromarray(grey, mode="L").save(target / name / f"{path.stem}.png", optimize=True)
    for name in TEST_SETS:
        shutil.copytree(data / name, target / name)
    shutil.copytree(Path(resize_right.__file__).parent, target / "pylib" / "resize_right",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 2**20
    print(f"staged {target}: {', '.join(sorted(p.name for p in target.iterdir()))}; {size:.1f} MiB")
    return 0


def _results_table(files: list[Path]) -> str:
    """The tables of scripts/results_table.py for these result files."""
    sys.path.insert(0, str(SCRIPTS))
    import results_table

    return results_table.sr_tables(results_table.sr_cells(results_table.load_results(files)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", help="output folder (resumed)")
    parser.add_argument("steps", type=int, nargs="?", help="training steps of each model")
    parser.add_argument("device", nargs="?", default="auto", help="cpu, cuda, auto")
    parser.add_argument("--stage", type=Path, metavar="DIR", help="only write the carried data")
    parser.add_argument("--data", type=Path, help="data root (default $N3NET_DATA)")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="models to train")
    parser.add_argument("--sets", nargs="+", default=list(TEST_SETS), help="test folders")
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument(
        "--batch-size", type=int, help="default 8 on a CPU, 32 (the paper's) on CUDA"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", help="the sr task's preset (default: the task's, budget)")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), help="default: the task's")
    parser.add_argument(
        "--amp", default="auto", choices=("auto", "bf16", "none"), help="auto: bf16 where native"
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="default: with bf16 (it slows float32 convolutions on an AVX2 CPU)",
    )
    parser.add_argument("--val-every", type=int, default=None, help="default: STEPS / 10")
    parser.add_argument("--log-every", type=int, default=None, help="default: STEPS / 100")
    parser.add_argument("--ckpt-minutes", type=float, default=10.0)
    parser.add_argument("--max-minutes", type=float, help="a time cap per run (breaks the match)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an n3net train override for every model (repeatable)",
    )
    parser.add_argument("--jobs", type=int, help="runs at once (default 2 on a CPU, 1 on CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--pack", type=Path, metavar="FILE.tar", help="pack OUT_DIR (no .pt)")
    parser.add_argument("--python", default=sys.executable, help="python running n3net")
    args = parser.parse_args(argv)  # fmt: skip
    if args.stage is None and (args.out_dir is None or args.steps is None):
        parser.error("give OUT_DIR and STEPS (or --stage DIR)")
    if args.steps is not None and args.steps < 1:
        parser.error(f"STEPS must be >= 1, got {args.steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    data = args.data or Path(os.environ.get("N3NET_DATA", ""))
    if not str(data):
        print("error: no data: give --data or set N3NET_DATA", file=sys.stderr)
        return 2
    args.data = data.resolve()
    if args.stage is not None:
        return stage(args.stage, args.data)
    for name in (*TRAIN_DIRS, VAL_DIR, *args.sets):
        if not (args.data / name).is_dir():
            print(f"error: {args.data / name} not found", file=sys.stderr)
            return 2
    args.out_dir = args.out_dir.resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.val_every = args.val_every or max(1, args.steps // 10)
    args.log_every = args.log_every or max(1, args.steps // 100)
    args.device = resolve_device(args.device)
    import torch

    from n3net.train.precision import resolve_amp

    args.amp = resolve_amp(args.amp, torch.device(args.device))
    if args.channels_last is None:
        args.channels_last = args.amp == "bf16"
    cuda = args.device.startswith("cuda")
    parallel = args.jobs or (1 if cuda else 2)
    args.batch_size = args.batch_size or (32 if cuda else 8)
    env = _child_env(args.data, None if cuda else args.threads)
    start = time.time()
    print(f"train_sr: {', '.join(args.archs)}, {args.steps} steps each, batch {args.batch_size}, "
          f"seed {args.seed}, amp {args.amp}, {_device_text(args.device)}, data {args.data}, "
          f"{parallel} at once", flush=True)  # fmt: skip

    jobs, runs = [], {}
    for arch in args.archs:
        run_dir = args.out_dir / arch
        runs[arch] = run_dir
        if _finished(run_dir, args.steps):
            print(f"== {arch}: already trained in {run_dir}, skipped")
            continue
        jobs.append((arch, train_command(args, arch, args.python), run_dir / "train.log"))
    failed = run_jobs(jobs, env, parallel)
    pack(args.out_dir, args.pack)
    if plot_validation(runs, args.out_dir / "curves-sr.png"):
        print(f"wrote {args.out_dir / 'curves-sr.png'}")

    models = {"bicubic": "bicubic"}
    for arch, run_dir in runs.items():
        if (run_dir / "model.safetensors").is_file():
            models[arch] = str(run_dir / "model.safetensors")
    evals = []
    for label, model in models.items():
        target = args.out_dir / "eval" / f"{label}.json"
        if target.is_file():
            continue
        command = [
            args.python, "-m", "n3net", "evaluate", "--task", "sr", "--model", model,
            "--scale", *map(str, args.scales), "--data", *(str(args.data / n) for n in args.sets),
            "--device", args.device, "--json", str(target), "--overwrite",
        ]  # fmt: skip
        evals.append((f"evaluate {label}", command, target.with_suffix(".txt")))
    failed += run_jobs(evals, env, parallel)

    files = sorted((args.out_dir / "eval").glob("*.json"))
    if files:
        tables = _results_table(files)
        summaries = []
        for arch, run_dir in runs.items():
            if (run_dir / "summary.json").is_file():
                s = json.loads((run_dir / "summary.json").read_text())
                best = s["best_val_psnr"]
                best = "n/a" if best is None else f"{best:.3f} dB (step {s['best_step']})"
                summaries.append(f"- {arch}: {s['steps']} steps in {s['minutes']:.2f} min on "
                                 f"{s['hardware']}, best validation {best}, "
                                 f"{s['imgs_per_s']} img/s")  # fmt: skip
        text = (f"# Super-resolution, {args.steps} steps each (batch {args.batch_size}, seed "
                f"{args.seed})\n\n" + "\n".join(summaries) + "\n\nY-PSNR (dB) / SSIM, published "
                "in brackets:\n\n" + tables + "\n")  # fmt: skip
        (args.out_dir / "results.md").write_text(text)
        print(text)
    pack(args.out_dir, args.pack)
    print(f"train_sr: finished in {(time.time() - start) / 60:.1f} min", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
