"""Train CNNet and CNNet + N3 at equal steps over several seeds, evaluate all, print one table.

One call does the whole comparison of docs/correspondences.md: every architecture of
``--archs`` is trained with every seed of ``--seeds`` (``n3net train --task correspondences``;
``--jobs`` runs at once, each in its own process, or one at a time in this process), each run
is then scored on the synthetic test split (``n3net evaluate --task correspondences``, with
"ours + RANSAC" beside the weighted eight-point when OpenCV is installed), each pose baseline
is scored on the same pairs (the evaluations, too, ``--jobs`` at once in their own
processes), and a Markdown table of mean ± standard deviation over the seeds is printed and
written, followed by the second architecture against the first seed by seed and
every learned model against RANSAC (1k and 10k iterations), by mAP@20 per tier.

Everything lands under OUT_DIR, so a device call brings back one folder (or the ``--pack``
tar of it, without checkpoints)::

    OUT_DIR/runs/ARCH-seedS/   the run folders (model.safetensors, log.csv, summary.json, ...;
                               elsewhere with --runs-dir, e.g. runs trained in the background)
    OUT_DIR/logs/ARCH-seedS.log  each run's output
    OUT_DIR/eval/ARCH-seedS.json   `n3net evaluate --json` of each run (and its + RANSAC)
    OUT_DIR/eval/baselines/NAME.json  the same of each baseline
    OUT_DIR/table.md, OUT_DIR/manifest.json  the table; settings, versions and timings

A rerun with the same OUT_DIR skips finished runs and evaluations, and resumes unfinished runs
from their checkpoints. On a CPU each run and each evaluation uses ``--threads`` threads
(1 by default).

Usage (from the repository root; scripts/train_correspondences.sh is the same with PYTHONPATH
set to src/)::

    python scripts/train_correspondences.py OUT_DIR STEPS [DEVICE] [--test-pairs 1000] ...
    python scripts/train_correspondences.py OUT_DIR STEPS --table-only   # the table again
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RANSAC_SUFFIX = "+ransac"
TIER_ROWS = ("all", "easy", "medium", "hard")
METRICS = (
    ("map5", "mAP@5"), ("map10", "mAP@10"), ("map20", "mAP@20"),
    ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
)  # fmt: skip
OPENCV_BASELINES = ("ransac", "ransac-10k", "lmeds")
PACK_EXCLUDED = (".pt", "last.safetensors")  # checkpoints: not needed to read the results


@dataclass(frozen=True)
class Run:
    """One training run of the comparison."""

    arch: str
    seed: int
    out: Path
    runs_dir: Path | None = None  # where the run folders are (default OUT_DIR/runs)

    @property
    def name(self) -> str:
        return f"{self.arch}-seed{self.seed}"

    @property
    def folder(self) -> Path:
        return (self.runs_dir or self.out / "runs") / self.name

    @property
    def log(self) -> Path:
        return self.out / "logs" / f"{self.name}.log"

    @property
    def result(self) -> Path:
        return self.out / "eval" / f"{self.name}.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for everything the call writes")
    parser.add_argument("steps", type=int, help="training steps of every run")
    parser.add_argument("device", nargs="?", default="cpu", help="cpu (default), cuda, cuda:1")
    parser.add_argument("--archs", nargs="+", default=["cnnet", "cnnet-n3"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--points", type=int, default=2000, help="matches per training pair")
    parser.add_argument("--train-pairs", type=int, default=10000)
    parser.add_argument("--val-pairs", type=int, default=500)
    parser.add_argument("--val-every", type=int, help="default: a tenth of the steps")
    parser.add_argument(
        "--essential-after", type=int, help="step of the essential loss (default: 20 %% of steps)"
    )
    parser.add_argument("--amp", choices=("none", "bf16", "auto"), default="none")
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="also stop each run after this many minutes (a cap for time-limited machines; "
        "the table then gives each run's steps)",
    )
    parser.add_argument("--test-seed", type=int, default=2, help="synthetic split (2: test)")
    parser.add_argument("--test-pairs", type=int, default=1000)
    parser.add_argument("--test-points", type=int, default=2000, help="matches per test pair")
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=["eight-point", "ransac", "oracle"],
        help="pose baselines scored on the same pairs (the OpenCV ones are left out when "
        "OpenCV is missing; none: no baselines)",
    )
    parser.add_argument(
        "--no-ransac-on-predicted",
        action="store_true",
        help="do not score NAME+ransac (OpenCV RANSAC on the predicted inliers)",
    )
    parser.add_argument(
        "--runs-dir", type=Path, help="folder of the run folders (default OUT_DIR/runs)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--pack", type=Path, help="also write a .tar of OUT_DIR without *.pt")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the runs")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.jobs < 1 or args.threads < 1 or args.test_pairs < 1:
        parser.error("STEPS, --jobs, --threads and --test-pairs must be >= 1")
    if args.baselines == ["none"]:
        args.baselines = []
    if args.val_every is None:
        args.val_every = max(1, args.steps // 10)
    if args.essential_after is None:
        args.essential_after = round(0.2 * args.steps)
    return args


def _environment(threads: int) -> dict[str, str]:
    """The runs' environment: n3net from this checkout, ``threads`` CPU threads."""
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def train_command(run: Run, args: argparse.Namespace) -> list[str]:
    """The ``n3net train`` command line of one run."""
    return [
        args.python, "-m", "n3net", "train", "--task", "correspondences",
        "--arch", run.arch, "--seed", str(run.seed), "--device", args.device,
        "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--points", str(args.points), "--train-pairs", str(args.train_pairs),
        "--val-pairs", str(args.val_pairs), "--val-every", str(args.val_every),
        "--essential-after-steps", str(args.essential_after), "--amp", args.amp,
        "--log-every", str(max(1, min(100, args.steps // 20))), "--ckpt-minutes", "5",
        "--no-tensorboard", "--progress", "lines", "--out", str(run.folder), "--resume", "auto",
    ] + (["--max-minutes", str(args.max_minutes)] if args.max_minutes else [])  # fmt: skip


def finished(run: Run, steps: int) -> bool:
    """Whether a run folder holds the finished run of ``steps`` steps."""
    summary = run.folder / "summary.json"
    if not summary.is_file() or not (run.folder / "model.safetensors").is_file():
        return False
    return json.loads(summary.read_text()).get("steps") == steps


def train(run: Run, args: argparse.Namespace) -> tuple[Run, int, float]:
    """Train one run (skipped when finished); its return code and wall seconds."""
    if finished(run, args.steps):
        print(f"{run.name}: finished before, skipped", flush=True)
        return run, 0, 0.0
    run.log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{run.name}: training ({args.steps} steps on {args.device})", flush=True)
    start = time.perf_counter()
    command = train_command(run, args)
    with run.log.open("a", encoding="utf-8") as log:
        if args.jobs == 1:  # one run at a time: in this process, which saves the start-up
            from n3net.cli.main import main as n3net_main

            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    code = n3net_main(command[3:])
                except Exception as error:  # a failed run must not stop the others
                    print(f"{type(error).__name__}: {error}", file=log)
                    code = 1
        else:
            code = subprocess.call(
                command, stdout=log, stderr=subprocess.STDOUT, env=_environment(args.threads),
                cwd=ROOT,
            )  # fmt: skip
    seconds = time.perf_counter() - start
    state = "done" if code == 0 else f"FAILED (exit {code}; see {run.log})"
    print(f"{run.name}: {state} in {seconds:.0f} s", flush=True)
    return run, code, seconds


def _has_opencv() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _settings_match(path: Path, models: list[str], args: argparse.Namespace) -> bool:
    """Whether ``path`` holds the evaluation of ``models`` on the pairs asked for."""
    if not path.is_file():
        return False
    settings = json.loads(path.read_text()).get("settings", {})
    wanted = {
        "models": models, "seed": args.test_seed, "pairs": args.test_pairs,
        "points": args.test_points,
    }  # fmt: skip
    return all(settings.get(key) == value for key, value in wanted.items())


def evaluate(models: list[str], target: Path, args: argparse.Namespace) -> int:
    """``n3net evaluate --task correspondences`` of ``models`` into ``target``; its exit code.

    In this process with ``--jobs 1``, else in a process of its own (``--threads`` threads)
    whose output goes to ``target`` with the suffix ``.log``.
    """
    if _settings_match(target, models, args):
        print(f"{target.name}: evaluated before, skipped", flush=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [
        "evaluate", "--task", "correspondences", "--model", *models,
        "--data", "synthetic", "--seed", str(args.test_seed),
        "--pairs", str(args.test_pairs), "--points", str(args.test_points),
        "--device", args.device, "--json", str(target), "--overwrite",
    ]  # fmt: skip
    if args.jobs == 1:
        from n3net.cli.main import main as n3net_main

        return n3net_main(command)
    print(f"{target.name}: evaluating {' '.join(models)}", flush=True)
    with target.with_suffix(".log").open("w", encoding="utf-8") as log:
        return subprocess.call(
            [args.python, "-m", "n3net", *command], stdout=log, stderr=subprocess.STDOUT,
            env=_environment(args.threads), cwd=ROOT,
        )  # fmt: skip


def baseline_result(out_dir: Path, name: str) -> Path:
    """The ``n3net evaluate --json`` file of one pose baseline."""
    return out_dir / "eval" / "baselines" / f"{name}.json"


def pack(out_dir: Path, target: Path) -> None:
    """A .tar of ``out_dir`` without checkpoints (written beside, then moved into place)."""
    partial = target.with_name(target.name + ".partial")

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        own = Path(info.name).name in (target.name, partial.name)  # a tar inside OUT_DIR
        return None if own or info.name.endswith(PACK_EXCLUDED) else info

    with tarfile.open(partial, "w") as tar:
        tar.add(out_dir, arcname=out_dir.name, filter=keep)
    partial.replace(target)


# The table ------------------------------------------------------------------------------------


def _label(model: str, runs: dict[str, Run]) -> tuple[str, int | None]:
    """(row label, seed) of a result's model: a run's architecture, else the model's name."""
    base, suffix = model, ""
    if model.endswith(RANSAC_SUFFIX):
        base, suffix = model[: -len(RANSAC_SUFFIX)], " + RANSAC"
    run = runs.get(Path(base).name)
    if run is not None:
        return run.arch + suffix, run.seed
    return model, None


def _cell(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "–"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    return f"{statistics.fmean(finite):.3f} ± {statistics.stdev(finite):.3f}"


def collect(out_dir: Path, runs: list[Run], baselines: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Results by row label: ``{"seeds": [...], "pairs": {tier: n}, "values": {tier: {metric:
    [per seed]}}}``, in the order: runs (by architecture), then the baselines."""
    by_name = {run.name: run for run in runs}
    files = [run.result for run in runs] + [baseline_result(out_dir, b) for b in baselines]
    rows: dict[str, dict[str, Any]] = {}
    for path in files:
        if not path.is_file():
            continue
        for result in json.loads(path.read_text())["results"]:
            label, seed = _label(result["model"], by_name)
            row = rows.setdefault(label, {"seeds": [], "pairs": {}, "values": {}})
            row["seeds"].append(seed)
            for tier in TIER_ROWS:
                summary = result["summary"] if tier == "all" else result["tiers"][tier]
                row["pairs"][tier] = summary["n_pairs"]
                values = row["values"].setdefault(tier, {key: [] for key, _ in METRICS})
                for key, _ in METRICS:
                    value = summary[key]
                    values[key].append(math.nan if value is None else float(value))
    order = [a for a in dict.fromkeys(run.arch for run in runs)]
    ranked = [label for arch in order for label in (arch, arch + " + RANSAC") if label in rows]
    return {label: rows[label] for label in ranked + [k for k in rows if k not in ranked]}


def _steps(run: Run) -> int | None:
    """The steps a run's summary says it trained, None without a summary."""
    summary = run.folder / "summary.json"
    return json.loads(summary.read_text()).get("steps") if summary.is_file() else None


def table(out_dir: Path, runs: list[Run], args: argparse.Namespace) -> str:
    """The Markdown table of every model, overall and per tier (mean ± std over seeds)."""
    rows = collect(out_dir, runs, args.baselines)
    names = " | ".join(title for _, title in METRICS)
    lines = [
        f"Synthetic test split {args.test_seed}, {args.test_pairs} pairs of {args.test_points} "
        f"matches; learned models: {args.steps} steps at batch {args.batch_size}, "
        f"{args.points} matches per training pair, on {args.device}; mean ± standard deviation "
        "over the seeds.",
        "",
        f"| model | seeds | tier | pairs | {names} |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    short = [
        f"{run.name} {steps}" for run in runs if (steps := _steps(run)) not in (None, args.steps)
    ]
    if short:
        lines[1:1] = ["", f"Runs stopped before {args.steps} steps: {', '.join(short)}."]
    for label, row in rows.items():
        seeds = [s for s in row["seeds"] if s is not None]
        seed_text = ", ".join(str(s) for s in seeds) if seeds else "–"
        for tier in TIER_ROWS:
            cells = " | ".join(_cell(row["values"][tier][key]) for key, _ in METRICS)
            lines.append(f"| `{label}` | {seed_text} | {tier} | {row['pairs'][tier]} | {cells} |")
    archs = list(dict.fromkeys(run.arch for run in runs))
    learned = [label for arch in archs for label in (arch, arch + " + RANSAC")]
    by_seed = seed_comparison(rows, archs[0], archs[1]) if len(archs) > 1 else ""
    for text in (by_seed, baseline_comparison(rows, learned)):
        if text:
            lines += ["", text.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _per_seed(row: dict[str, Any], tier: str, metric: str) -> dict[int, float]:
    values = row["values"][tier][metric]
    return {seed: value for seed, value in zip(row["seeds"], values, strict=True)
            if seed is not None and not math.isnan(value)}  # fmt: skip


def seed_comparison(rows: dict[str, dict[str, Any]], base: str, other: str) -> str:
    """Markdown: ``other`` against ``base`` seed by seed, mAP@20 per tier, and the tally.

    A seed's cell is ``other vs base (difference)``; the last row counts the seeds at which
    ``other`` is ahead, and says whether its worst seed beats ``base``'s best. Empty when
    either row is missing.
    """
    if base not in rows or other not in rows:
        return ""
    lines = [
        f"`{other}` against `{base}`, mAP@20 seed by seed (`{other}` vs `{base}`, difference; "
        f"ahead: the seeds at which `{other}` is higher; worst > best: its lowest seed is above "
        f"the highest of `{base}`):",
        "",
        "| seed | " + " | ".join(TIER_ROWS) + " |",
        "|---|" + "---|" * len(TIER_ROWS),
    ]
    per_tier = {
        tier: (_per_seed(rows[other], tier, "map20"), _per_seed(rows[base], tier, "map20"))
        for tier in TIER_ROWS
    }
    seeds = sorted(set.intersection(*(set(a) & set(b) for a, b in per_tier.values())))
    for seed in seeds:
        cells = [f"{a[seed]:.3f} vs {b[seed]:.3f} ({a[seed] - b[seed]:+.3f})"
                 for a, b in per_tier.values()]  # fmt: skip
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    tally = []
    for a, b in per_tier.values():
        ahead = sum(a[seed] > b[seed] for seed in seeds)
        worst_beats_best = bool(seeds) and min(a[s] for s in seeds) > max(b[s] for s in seeds)
        tally.append(f"{ahead} of {len(seeds)}" + ("; worst > best" if worst_beats_best else ""))
    lines.append("| ahead | " + " | ".join(tally) + " |")
    return "\n".join(lines) + "\n"


def baseline_comparison(rows: dict[str, dict[str, Any]], learned: list[str]) -> str:
    """Markdown: each learned row's mean mAP@20 minus each RANSAC baseline's, per tier.

    A cell is the difference of the means over the seeds, with the number of seeds whose
    mAP@20 is above the baseline's. Empty without a learned or a RANSAC row.
    """
    baselines = [b for b in ("ransac", "ransac-10k") if b in rows]
    learned = [label for label in learned if label in rows]
    if not baselines or not learned:
        return ""
    lines = [
        "Learned models against RANSAC, mAP@20 (mean over the seeds minus the baseline; seeds "
        "ahead):",
        "",
        "| model − baseline | " + " | ".join(TIER_ROWS) + " |",
        "|---|" + "---|" * len(TIER_ROWS),
    ]
    for label in learned:
        for baseline in baselines:
            cells = []
            for tier in TIER_ROWS:
                mine = list(_per_seed(rows[label], tier, "map20").values())
                theirs = [v for v in rows[baseline]["values"][tier]["map20"] if not math.isnan(v)]
                if not mine or not theirs:
                    cells.append("–")
                    continue
                ahead = sum(value > theirs[0] for value in mine)
                difference = statistics.fmean(mine) - theirs[0]
                cells.append(f"{difference:+.3f} ({ahead} of {len(mine)})")
            lines.append(f"| `{label}` − `{baseline}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _manifest(out_dir: Path, args: argparse.Namespace, timings: dict[str, float]) -> None:
    import platform

    import torch

    path = out_dir / "manifest.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    document = {
        "settings": settings,
        "train_seconds": {**previous.get("train_seconds", {}), **timings},
        "torch_version": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "opencv": _has_opencv(),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate, tabulate; 0 when every step worked, 1 otherwise."""
    args = parse_args(argv)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(args.threads))  # before numpy and torch start
    sys.path.insert(0, str(ROOT / "src"))  # n3net from this checkout, also when not installed
    out_dir: Path = args.out_dir
    runs = [Run(a, s, out_dir, args.runs_dir) for a in args.archs for s in args.seeds]
    failed: list[str] = []
    if not args.table_only:
        out_dir.mkdir(parents=True, exist_ok=True)
        import torch

        torch.set_num_threads(args.threads)
        timings: dict[str, float] = {}
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for run, code, seconds in pool.map(lambda r: train(r, args), runs):
                if code:
                    failed.append(run.name)
                elif seconds:
                    timings[run.name] = round(seconds, 1)
                if args.pack:
                    pack(out_dir, args.pack)
        _manifest(out_dir, args, timings)
        opencv = _has_opencv()
        jobs: list[tuple[str, list[str], Path]] = []  # (name, models, result file)
        for run in runs:
            if run.name in failed:
                continue
            models = [str(run.folder)]
            if opencv and not args.no_ransac_on_predicted:
                models.append(str(run.folder) + RANSAC_SUFFIX)
            jobs.append((run.name, models, run.result))
        baselines = [b for b in args.baselines if opencv or b not in OPENCV_BASELINES]
        if len(baselines) < len(args.baselines):
            print("OpenCV is missing: the OpenCV baselines are left out", flush=True)
        jobs += [(b, [b], baseline_result(out_dir, b)) for b in baselines]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            codes = pool.map(lambda job: (job[0], evaluate(job[1], job[2], args)), jobs)
            failed += [f"{name} (evaluation)" for name, code in codes if code]
    text = table(out_dir, runs, args)
    if out_dir.is_dir():
        (out_dir / "table.md").write_text(text, encoding="utf-8")
    if args.pack and not args.table_only:
        pack(out_dir, args.pack)
    print(text, end="")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
