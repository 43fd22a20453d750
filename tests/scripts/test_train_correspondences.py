"""scripts/train_correspondences.sh end to end at a tiny size: 6 runs, evaluations, the table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
spec = importlib.util.spec_from_file_location("train_corr", SCRIPTS / "train_correspondences.py")
assert spec is not None and spec.loader is not None
train_corr = importlib.util.module_from_spec(spec)
sys.modules["train_corr"] = train_corr  # dataclasses look their module up
spec.loader.exec_module(train_corr)

TINY = [
    "--batch-size", "2", "--points", "32", "--train-pairs", "4", "--val-pairs", "2",
    "--test-pairs", "3", "--test-points", "48", "--baselines", "eight-point", "ransac", "oracle",
]  # fmt: skip


def test_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "corr"
    pack = tmp_path / "corr.tar"
    cmd = [str(SCRIPTS / "train_correspondences.sh"), str(out), "2", "cpu", *TINY]
    cmd += ["--pack", str(pack)]
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    names = [f"{arch}-seed{seed}" for arch in ("cnnet", "cnnet-n3") for seed in (0, 1, 2)]
    for name in names:
        assert json.loads((out / "runs" / name / "summary.json").read_text())["steps"] == 2
        results = json.loads((out / "eval" / f"{name}.json").read_text())["results"]
        assert results[0]["summary"]["n_pairs"] == 3
    has_cv2 = importlib.util.find_spec("cv2") is not None
    expected = ["eight-point", "ransac", "oracle"] if has_cv2 else ["eight-point", "oracle"]
    for name in expected:  # one file per baseline
        results = json.loads((out / "eval" / "baselines" / f"{name}.json").read_text())["results"]
        assert [r["model"] for r in results] == [name]
    assert sorted(p.stem for p in (out / "eval" / "baselines").glob("*.json")) == sorted(expected)
    text = (out / "table.md").read_text()
    assert text in done.stdout
    main, _, comparisons = text.partition("\n`cnnet-n3` against `cnnet`")
    rows = [line for line in main.splitlines() if line.startswith("| `")]
    labels = list(dict.fromkeys(line.split("`")[1] for line in rows))
    assert comparisons.count("\n| ahead | ") == 1  # seed by seed, then against RANSAC
    against = [line for line in comparisons.splitlines() if " − `ransac` |" in line]
    assert len(against) == (4 if has_cv2 else 0)
    learned = ["cnnet", "cnnet + RANSAC", "cnnet-n3", "cnnet-n3 + RANSAC"]
    assert labels == (learned if has_cv2 else learned[::2]) + expected
    assert len(rows) == 4 * len(labels)  # all, easy, medium, hard
    cnnet_all = next(line for line in rows if line.startswith("| `cnnet` | 0, 1, 2 | all | 3 |"))
    assert cnnet_all.count(" ± ") == 6
    oracle_all = next(line for line in rows if line.startswith("| `oracle` | – | all | 3 |"))
    assert "1.000 | 1.000 | 1.000 |" in oracle_all  # precision, recall, F1
    import tarfile

    with tarfile.open(pack) as tar:
        packed = tar.getnames()
    assert "corr/table.md" in packed and "corr/runs/cnnet-seed0/model.safetensors" in packed
    assert not [name for name in packed if name.endswith((".pt", "last.safetensors"))]

    # A rerun skips everything finished and prints the same table.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stdout.count("finished before, skipped") == 6
    assert again.stdout.count("evaluated before, skipped") == 6 + len(expected)
    assert text in again.stdout


def test_runs_in_parallel_processes(tmp_path: Path) -> None:
    out = tmp_path / "corr"
    elsewhere = tmp_path / "background"  # run folders outside OUT_DIR (--runs-dir)
    argv = [str(out), "1", "cpu", *TINY, "--archs", "cnnet", "--seeds", "0", "1", "--jobs", "2"]
    argv += ["--baselines", "oracle", "--no-ransac-on-predicted", "--python", sys.executable]
    argv += ["--runs-dir", str(elsewhere)]
    assert train_corr.main(argv) == 0
    for seed in (0, 1):
        assert "1 steps" in (out / "logs" / f"cnnet-seed{seed}.log").read_text()
        results = json.loads((out / "eval" / f"cnnet-seed{seed}.json").read_text())["results"]
        assert [r["model"] for r in results] == [str(elsewhere / f"cnnet-seed{seed}")]
        assert (out / "eval" / f"cnnet-seed{seed}.log").is_file()  # evaluated in its process
    oracle = json.loads((out / "eval" / "baselines" / "oracle.json").read_text())["results"]
    assert oracle[0]["summary"]["n_pairs"] == 3 and not (out / "runs").exists()


def test_table_of_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def result(model: str, map20: float) -> dict:
        summary = {"map5": 0.5, "map10": 0.5, "map20": map20, "precision": 0.5, "recall": 0.5,
                   "f1": 0.5, "n_pairs": 4}  # fmt: skip
        return {"model": model, "summary": summary, "tiers": dict.fromkeys(("easy", "medium",
                "hard"), summary)}  # fmt: skip

    out = tmp_path / "corr"
    (out / "eval").mkdir(parents=True)
    for seed, value in ((0, 0.2), (1, 0.4)):
        run = out / "runs" / f"cnnet-seed{seed}"
        document = {"results": [result(str(run), value), result(f"{run}+ransac", 0.9)]}
        (out / "eval" / f"cnnet-seed{seed}.json").write_text(json.dumps(document))
    (out / "runs" / "cnnet-seed1").mkdir(parents=True)
    (out / "runs" / "cnnet-seed1" / "summary.json").write_text('{"steps": 3}')
    argv = [str(out), "5", "--archs", "cnnet", "--seeds", "0", "1", "--table-only"]
    assert train_corr.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| `cnnet` | 0, 1 | all | 4 | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.300 ± 0.141 |" in (
        "\n".join(lines)
    )
    assert any(line.startswith("| `cnnet + RANSAC` | 0, 1 | hard | 4 |") for line in lines)
    assert "Runs stopped before 5 steps: cnnet-seed1 3." in lines


def test_seed_by_seed_and_ransac_comparisons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def result(model: str, values: dict[str, float]) -> dict:
        def summary(map20: float) -> dict:
            return {"map5": 0.1, "map10": 0.2, "map20": map20, "precision": 0.5, "recall": 0.5,
                    "f1": 0.5, "n_pairs": 4}  # fmt: skip

        tiers = {tier: summary(values[tier]) for tier in ("easy", "medium", "hard")}
        return {"model": model, "summary": summary(values["all"]), "tiers": tiers}

    def tiers(all_: float, easy: float, medium: float, hard: float) -> dict[str, float]:
        return {"all": all_, "easy": easy, "medium": medium, "hard": hard}

    out = tmp_path / "corr"
    (out / "eval").mkdir(parents=True)
    scores = {
        ("cnnet", 0): tiers(0.60, 0.80, 0.60, 0.50),
        ("cnnet", 1): tiers(0.62, 0.85, 0.62, 0.40),
        ("cnnet-n3", 0): tiers(0.70, 0.90, 0.70, 0.55),
        ("cnnet-n3", 1): tiers(0.65, 0.84, 0.66, 0.45),
    }
    for (arch, seed), values in scores.items():
        run = out / "runs" / f"{arch}-seed{seed}"
        document = {"results": [result(str(run), values)]}
        (out / "eval" / f"{arch}-seed{seed}.json").write_text(json.dumps(document))
    baselines = [result("ransac", tiers(0.5, 0.8, 0.5, 0.3)),
                 result("ransac-10k", tiers(0.63, 0.97, 0.71, 0.39))]  # fmt: skip
    (out / "eval" / "baselines").mkdir()
    for baseline in baselines:
        path = out / "eval" / "baselines" / f"{baseline['model']}.json"
        path.write_text(json.dumps({"results": [baseline]}))
    argv = [str(out), "5", "--seeds", "0", "1", "--table-only", "--baselines", "ransac-10k"]
    argv += ["ransac"]  # the table's order of the baselines is this one
    assert train_corr.main(argv) == 0
    text = capsys.readouterr().out
    assert "| 0 | 0.700 vs 0.600 (+0.100) | 0.900 vs 0.800 (+0.100) |" in text
    # easy: behind at seed 1; hard: ahead at both, but the worst (0.45) is below the best (0.50)
    assert "| ahead | 2 of 2; worst > best | 1 of 2 | 2 of 2; worst > best | 2 of 2 |" in text
    main = text.partition("\n`cnnet-n3` against `cnnet`")[0]
    labels = list(dict.fromkeys(line.split("`")[1] for line in main.splitlines() if "| `" in line))
    assert labels == ["cnnet", "cnnet-n3", "ransac-10k", "ransac"]
    assert "| `cnnet` − `ransac-10k` | -0.020 (0 of 2) |" in text
    assert "| `cnnet-n3` − `ransac` | +0.175 (2 of 2) | +0.070 (2 of 2) | +0.180 (2 of 2) |" in text
    assert "cnnet + RANSAC" not in text.split("Learned models against RANSAC")[1]  # no such rows
