"""Compare training runs by validation PSNR against steps and against wall-clock time.

Usage: python scripts/compare_runs.py RUN_DIR [RUN_DIR ...] [--png FILE]

Reads each run folder's ``log.csv`` (written by ``n3net train``) and prints a Markdown table: the
validation PSNR of every run at each validation point, by step and by elapsed minutes, so that a
same-budget comparison can be split into "better per step" and "more steps per minute". With
``--png`` it also plots both views side by side (needs matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_validation(run_dir: Path) -> list[tuple[int, float, float]]:
    """Return (step, minutes, validation PSNR) rows of a run's log.csv."""
    path = run_dir / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (not an n3net train run folder?)")
    with path.open() as file:
        return [
            (int(row["step"]), float(row["elapsed_s"]) / 60, float(row["val_psnr"]))
            for row in csv.DictReader(file)
            if row["val_psnr"]
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with log.csv")
    parser.add_argument("--png", type=Path, help="also plot PSNR against steps and minutes")
    parser.add_argument("--force", action="store_true", help="overwrite --png if it exists")
    args = parser.parse_args(argv)
    if args.png is not None and args.png.exists() and not args.force:
        print(f"error: {args.png} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        curves = {run.name: read_validation(run) for run in args.runs}
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    steps = sorted({step for rows in curves.values() for step, _, _ in rows})
    names = list(curves)
    print("| step | " + " | ".join(f"{n}: PSNR (minutes)" for n in names) + " |")
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
        by_step.set(xlabel="step", ylabel="validation PSNR (dB)", title="per step")
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
