"""scripts/ab_table.py: step-matched A/B tables over seeds."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))  # ab_table imports compare_runs beside it
spec = importlib.util.spec_from_file_location("ab_table", SCRIPTS / "ab_table.py")
assert spec is not None and spec.loader is not None
ab_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab_table)

HEADER = "step,epoch,lr,loss,val_psnr,elapsed_s,imgs_per_s\n"


def _run(folder: Path, psnr: dict[int, float]) -> Path:
    folder.mkdir()
    rows = "".join(f"{step},0,1e-3,0.1,{value},{step},1\n" for step, value in psnr.items())
    (folder / "log.csv").write_text(HEADER + rows)
    return folder


def test_means_and_differences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a0 = _run(tmp_path / "a0", {100: 20.0, 200: 22.0})
    a1 = _run(tmp_path / "a1", {100: 21.0, 200: 23.0})
    b0 = _run(tmp_path / "b0", {100: 22.5, 200: 23.0, 300: 24.0})
    out = tmp_path / "ab.json"
    assert ab_table.main([f"a={a0},{a1}", f"b={b0}", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| step | a | b | b − a |"
    assert lines[2] == "| 100 | 20.50 (20.00 / 21.00) | 22.50 | +2.00 |"
    assert lines[3] == "| 200 | 22.50 (22.00 / 23.00) | 23.00 | +0.50 |"
    assert len(lines) == 4  # step 300: only one arm reached it
    assert json.loads(out.read_text())["a"]["200"] == [22.0, 23.0]


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", {100: 20.0})
    assert ab_table.main(["nolabel"]) == 2
    assert "LABEL=RUN_DIR" in capsys.readouterr().err
    assert ab_table.main([f"a={a}", "--steps", "200"]) == 2
    assert "not every run reached step(s) [200]" in capsys.readouterr().err
