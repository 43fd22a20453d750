"""The long CPU runs of ``checkpoints/``: what their resume scripts launch, and that every
committed checkpoint loads safely and is the run its script continues.

The resume scripts run for real against a stand-in ``n3net`` on the PATH, which records the
``n3net train`` arguments and prints the configuration they resolve to. A family's folder
goes once its weights ship; these tests then follow what is left, and a stand-in family
(``demo``) keeps ``background.sh`` itself tested when no run is left.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from n3net.train.checkpoint import load_checkpoint
from n3net.train.config import RunConfig
from n3net.train.precision import native_bf16

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
FAMILIES = sorted(path.parent.name for path in CHECKPOINTS.glob("*/resume.sh"))
COMMITTED = sorted(
    (path.parents[1].name, path.parent.name) for path in CHECKPOINTS.glob("*/*/last.pt")
)
FINISHED = sorted(
    (path.parents[1].name, path.parent.name) for path in CHECKPOINTS.glob("*/*/summary.json")
)
# what each script may start: run name -> (architecture, loss scale of the denoising runs)
RUNS: dict[str, dict[str, tuple[str, float | None]]] = {}
# families whose runs name their precision (the others: bf16 + channels-last where native)
FIXED_PRECISION: dict[str, tuple[str, bool]] = {}
# fields a machine or a folder decides, not the run: precision (resume.sh picks it by the CPU)
MACHINE_FIELDS = {("data", "root"), ("train", "out_dir"), ("train", "amp"),
                  ("train", "channels_last")}  # fmt: skip

# a family that exists only in the tests: its script names no precision
DEMO = ('#!/bin/sh\nexec "$(dirname "$0")/../background.sh" demo "$1" '
        "--arch dncnn --sigma 25 --max-steps 10\n")  # fmt: skip

STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "$RECORD/args.txt"
echo "$OMP_NUM_THREADS $MKL_NUM_THREADS" > "$RECORD/threads.txt"
python -m n3net "$@" --print-config > "$RECORD/config.json"
touch "$RECORD/done"
"""


def _tree(
    tmp_path: Path, family: str, run: str, script: str | None = None, **extra_env: str
) -> tuple[Path, dict]:
    """A copy of the tree with RUN committed, and an environment whose ``n3net`` is the stand-in.

    ``script`` replaces the family's ``resume.sh`` (a family that exists only in the test)."""
    root = tmp_path / "repo"
    (root / "checkpoints" / family).mkdir(parents=True)
    shutil.copy(CHECKPOINTS / "background.sh", root / "checkpoints")
    resume = root / "checkpoints" / family / "resume.sh"
    if script is None:
        shutil.copy(CHECKPOINTS / family / "resume.sh", resume)
    else:
        resume.write_text(script)
        resume.chmod(0o755)
    committed = root / "checkpoints" / family / run
    committed.mkdir()
    (committed / "last.pt").write_bytes(b"committed checkpoint")
    (committed / "log.csv").write_text("step\n250\n")
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "n3net").write_text(STAND_IN)
    (bin_dir / "n3net").chmod(0o755)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "RECORD": str(record)}  # fmt: skip
    env.pop("N3NET_DATA", None)
    env.pop("THREADS", None)
    return root, {**env, **extra_env}


def _launch(
    tmp_path: Path, family: str, run: str, script: str | None = None, **extra_env: str
) -> tuple[list[str], dict, Path]:
    """Run ``checkpoints/FAMILY/resume.sh RUN`` in a copy of the tree; its args and config."""
    root, env = _tree(tmp_path, family, run, script, **extra_env)
    record = tmp_path / "record"
    script = root / "checkpoints" / family / "resume.sh"
    started = subprocess.run([str(script), run], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"started {family}/{run} (pid ")
    deadline = time.monotonic() + 120
    while not (record / "done").exists():  # the stand-in runs in the background
        assert time.monotonic() < deadline, (root / "runs" / family / f"{run}.log").read_text()
        time.sleep(0.1)
    args = (record / "args.txt").read_text().splitlines()
    return args, json.loads((record / "config.json").read_text()), root


def _flat(config: dict) -> dict[tuple[str, str], object]:
    return {
        (section, key): value
        for section, values in config.items()
        for key, value in values.items()
        if (section, key) not in MACHINE_FIELDS
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_script_starts_each_run_in_the_background(tmp_path: Path, family: str) -> None:
    run, (arch, _) = next(iter(RUNS[family].items()))
    args, config, root = _launch(tmp_path, family, run)
    out = root / "runs" / family / run
    assert args[0] == "train"
    assert args[args.index("--out") + 1] == str(out)
    assert args[args.index("--resume") + 1] == "auto"
    assert config["model"]["arch"] == arch
    # the committed checkpoint was copied there on first use
    assert (out / "last.pt").read_bytes() == b"committed checkpoint"
    assert (out / "log.csv").read_text() == "step\n250\n"
    # bf16 + channels-last only where this CPU computes bf16 natively, unless the run names it
    native = native_bf16(torch.device("cpu"))
    expected = FIXED_PRECISION.get(family, ("bf16", True) if native else ("none", False))
    assert (config["train"]["amp"], config["train"]["channels_last"]) == expected
    assert (config["train"]["device"], config["train"]["ckpt_minutes"]) == ("cpu", 10.0)
    assert (tmp_path / "record" / "threads.txt").read_text().split() == ["1", "1"]


def test_a_run_that_names_no_precision_gets_bf16_only_where_native(tmp_path: Path) -> None:
    """background.sh's own choice, through a stand-in family whose script names no ``--amp``."""
    _, config, _ = _launch(tmp_path, "demo", "run", DEMO)
    native = native_bf16(torch.device("cpu"))
    expected = ("bf16", True) if native else ("none", False)
    assert (config["train"]["amp"], config["train"]["channels_last"]) == expected


def _any_run() -> tuple[str, str, str | None]:
    """A family that is still training and one of its runs, else the stand-in ``demo``."""
    if not FAMILIES:
        return "demo", "run", DEMO
    return FAMILIES[0], next(iter(RUNS[FAMILIES[0]])), None


def test_threads_gives_a_run_more_threads(tmp_path: Path) -> None:
    _launch(tmp_path, *_any_run(), THREADS="2")
    assert (tmp_path / "record" / "threads.txt").read_text().split() == ["2", "2"]


@pytest.mark.parametrize("threads", ["0", "two", "-1"])
def test_a_bad_thread_count_is_refused(tmp_path: Path, threads: str) -> None:
    family, run, script = _any_run()
    root, env = _tree(tmp_path, family, run, script, THREADS=threads)
    resume = root / "checkpoints" / family / "resume.sh"
    done = subprocess.run([str(resume), run], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    expected = f"background.sh: THREADS must be a positive integer, not '{threads}'"
    assert done.stderr.strip() == expected
    assert not (root / "runs").exists()  # refused before anything was copied or started


@pytest.mark.parametrize("family", FAMILIES)
def test_an_unknown_run_is_refused(family: str) -> None:
    done = subprocess.run(
        [str(CHECKPOINTS / family / "resume.sh"), "nonsense"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.startswith("resume.sh: unknown run 'nonsense'")


@pytest.mark.parametrize(("family", "run"), COMMITTED)
def test_committed_checkpoint_is_the_run_its_script_continues(
    tmp_path: Path, family: str, run: str
) -> None:
    folder = CHECKPOINTS / family / run
    state = load_checkpoint(folder / "last.pt")  # weights_only=True
    saved = RunConfig.from_dict(state["config"]).to_dict()
    _, launched, _ = _launch(tmp_path, family, run)
    assert _flat(saved) == _flat(launched)
    arch, loss_scale = RUNS[family][run]
    assert saved["model"]["arch"] == arch
    if loss_scale is not None:
        assert saved["task"]["loss_scale"] == loss_scale
    with (folder / "log.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert rows and int(rows[-1]["step"]) <= state["step"]


@pytest.mark.parametrize(("family", "run"), FINISHED)
def test_committed_finished_run_is_whole(family: str, run: str) -> None:
    """A finished run kept until it ships: its best weights load safely and match its log."""
    from n3net.models import load_model, model_metadata

    folder = CHECKPOINTS / family / run
    summary = json.loads((folder / "summary.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert summary["steps"] == config["train"]["max_steps"]
    assert summary["arch"] == config["model"]["arch"] == RUNS[family][run][0]
    model = load_model(folder / "model.safetensors")  # safetensors: no code runs
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    assert model_metadata(folder / "model.safetensors")["n3net_arch"] == summary["arch"]
    with (folder / "log.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert int(rows[-1]["step"]) == summary["steps"]
    metric = next(key[len("best_") :] for key in summary if key.startswith("best_val_"))
    best = [r for r in rows if r.get(metric) and int(r["step"]) == summary["best_step"]]
    assert best and abs(float(best[0][metric]) - summary[f"best_{metric}"]) < 1e-3


def test_a_finished_run_is_copied_not_trained(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "checkpoints" / "demo" / "run").mkdir(parents=True)
    shutil.copy(CHECKPOINTS / "background.sh", root / "checkpoints")
    resume = root / "checkpoints" / "demo" / "resume.sh"
    resume.write_text(DEMO)
    resume.chmod(0o755)
    committed = root / "checkpoints" / "demo" / "run"
    (committed / "summary.json").write_text('{"steps": 2000}')
    (committed / "model.safetensors").write_bytes(b"best weights")
    out = root / "runs" / "demo" / "run"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"newer weights")  # never overwritten
    env = {**os.environ, "PATH": f"{tmp_path / 'no-n3net'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(resume), "run"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("demo/run has finished: its weights and logs are in ")
    assert (out / "summary.json").read_text() == '{"steps": 2000}'
    assert (out / "model.safetensors").read_bytes() == b"newer weights"
    assert not (root / "runs" / "demo" / "run.log").exists()  # nothing was started
