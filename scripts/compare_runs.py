"""Compare training runs by their validation metric against steps and against wall-clock time.

Usage: python scripts/compare_runs.py RUN_DIR [RUN_DIR ...] [--metric COLUMN] [--png FILE]

Reads each run folder's ``log.csv`` (written by ``n3net train``) and prints a Markdown table: the
validation metric of every run at each validation point, by step and by elapsed minutes, so that
a same-budget comparison can be split into "better per step" and "more steps per minute". The
metric is ``--metric`` or, by default, the first of ``val_psnr`` (denoising, super-resolution)
and ``val_map`` (correspondences, pose mAP@20) that the first log has. A step logged twice (a
run resumed from an earlier checkpoint) counts once, its last row. With ``--png`` it also plots
both views side by side (needs matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

_LABELS = {"val_psnr": ("PSNR", "validation PSNR (dB)"), "val_map": ("mAP", "validation mAP@20")}


def _log(run_dir: Path) -> Path:
    path = run_dir / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (not an n3net train run folder?)")
    return path


def default_metric(run_dir: Path) -> str:
    """The first of ``val_psnr`` and ``val_map`` among the columns of a run's log.csv."""
    with _log(run_dir).open() as file:
        columns = next(csv.reader(file), [])
    for name in _LABELS:
        if name in columns:
            return name
    raise ValueError(f"{run_dir / 'log.csv'} has no val_psnr or val_map column; pass --metric")


def read_validation(run_dir: Path, metric: str = "val_psnr") -> list[tuple[int, float, float]]:
    """Return (step, minutes, validation metric) rows of a run's log.csv, one per step."""
    with _log(run_dir).open() as file:
        reader = csv.DictReader(file)
        if metric not in (reader.fieldnames or []):
            raise ValueError(f"{run_dir / 'log.csv'} has no {metric} column")
        rows = {
            int(row["step"]): (float(row["elapsed_s"]) / 60, float(row[metric]))
            for row in reader
            if row[metric]
        }
    return [(step, minutes, value) for step, (minutes, value) in sorted(rows.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with log.csv")
    parser.add_argument("--metric", help="the log.csv column (default: val_psnr or val_map)")
    parser.add_argument("--png", type=Path, help="also plot the metric against steps and minutes")
    parser.add_argument("--force", action="store_true", help="overwrite --png if it exists")
    args = parser.parse_args(argv)
    if args.png is not None and args.png.exists() and not args.force:
        print(f"error: {args.png} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        metric = args.metric or default_metric(args.runs[0])
        curves = {run.name: read_validation(run, metric) for run in args.runs}
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    short, axis_label = _LABELS.get(metric, (metric, metric))
    steps = sorted({step for rows in curves.values() for step, _, _ in rows})
    names = list(curves)
    print("| step | " + " | ".join(f"{n}: {short} (minutes)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for step in steps:
        cells = []
        for name in names:
            match = [(m, p) for s, m, p in curves[name] if s == step]
            cells.append(f"{match[0][1]:.3f} ({match[0][0]:.1f})" if match else "")
        print(f"| {step} | " + " | ".join(cells) + " |")
    if args.png:
        try:
            import matplotlib
        except ImportError:
            print("error: --png needs matplotlib (pip install -e '.[train]')", file=sys.stderr)
            return 2

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for name, rows in curves.items():
            by_step.plot([r[0] for r in rows], [r[2] for r in rows], marker="o", label=name)
            by_time.plot([r[1] for r in rows], [r[2] for r in rows], marker="o", label=name)
        by_step.set(xlabel="step", ylabel=axis_label, title="per step")
        by_time.set(xlabel="minutes", title="per wall-clock minute")
        for axis in (by_step, by_time):
            axis.grid(alpha=0.3)
            axis.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
