"""Tabulate a step-matched A/B comparison of training runs: validation PSNR per seed and mean.

Usage::

    python scripts/ab_table.py LABEL=RUN_DIR[,RUN_DIR...] LABEL=RUN_DIR[,RUN_DIR...] ... \
        [--steps 200 400] [--json FILE]

Each argument is one arm of the comparison: a label and the run folders of its seeds (written by
``n3net train``; their ``log.csv`` validation rows are read). The Markdown table has one row per
validation step that every run reached (or the ``--steps`` asked for): each arm's mean over its
seeds with the per-seed values, and every other arm's difference to the first one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from compare_runs import read_validation


def _parse_arm(text: str) -> tuple[str, list[Path]]:
    label, sep, dirs = text.partition("=")
    if not sep or not label or not dirs:
        raise ValueError(f"an arm is LABEL=RUN_DIR[,RUN_DIR...], got {text!r}")
    return label, [Path(d) for d in dirs.split(",")]


def table(arms: dict[str, list[Path]], steps: list[int] | None) -> tuple[str, dict]:
    """Return the Markdown table and its values ``{label: {step: [psnr per seed]}}``."""
    values: dict[str, dict[int, list[float]]] = {}
    for label, runs in arms.items():
        per_run = [{step: psnr for step, _, psnr in read_validation(run)} for run in runs]
        common = set.intersection(*(set(curve) for curve in per_run))
        values[label] = {step: [curve[step] for curve in per_run] for step in sorted(common)}
    shared = sorted(set.intersection(*(set(v) for v in values.values())))
    if steps:
        missing = sorted(set(steps) - set(shared))
        if missing:
            raise ValueError(f"not every run reached step(s) {missing}")
        shared = sorted(steps)
    labels = list(arms)
    head = ["step", *labels, *(f"{label} − {labels[0]}" for label in labels[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for step in shared:
        means = [statistics.fmean(values[label][step]) for label in labels]
        cells = [
            f"{mean:.2f} ({' / '.join(f'{v:.2f}' for v in values[label][step])})"
            if len(values[label][step]) > 1
            else f"{mean:.2f}"
            for label, mean in zip(labels, means, strict=True)
        ]
        cells += [f"{mean - means[0]:+.2f}" for mean in means[1:]]
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines), {label: values[label] for label in labels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR...] per arm")
    parser.add_argument("--steps", nargs="+", type=int, help="only these validation steps")
    parser.add_argument("--json", type=Path, help="also write the values as JSON")
    args = parser.parse_args(argv)
    try:
        arms = dict(_parse_arm(text) for text in args.arms)
        text, values = table(arms, args.steps)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    if args.json:
        args.json.write_text(json.dumps(values, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
