"""benchmarks/speed.py still runs (tiny sizes; the real numbers come from the full run)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


@pytest.mark.parametrize("retain", [False, True])
@pytest.mark.slow
def test_speed_script_writes_flat_json(tmp_path: Path, retain: bool) -> None:
    out = tmp_path / "speed.json"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--sizes",
        "48",
        "--repeats",
        "1",
        "--train-batch",
        "2",
        "--train-crop",
        "40",
        "--json",
        str(out),
        *(["--retain-memory", "--memory-runs", "3"] if retain else []),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1200)
    res = json.loads(out.read_text())
    for key in ("forward_time_ratio_48", "peak_mem_ratio_48", "train_step_time_ratio"):
        assert res[key] > 0
    assert res["device"] == "cpu" and res["threads"] >= 1
    assert res["retain_memory"] is retain
    if retain:  # the reported peak is the median of the runs, which are recorded
        for arch in ("dncnn17", "n3net"):
            runs = res[f"peak_mem_{arch}_48_mb_runs"]
            assert len(runs) == 3 and res[f"peak_mem_{arch}_48_mb"] == sorted(runs)[1]
    else:
        assert "peak_mem_dncnn17_48_mb_runs" not in res
