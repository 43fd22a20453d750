"""benchmarks/breakdown.py still runs and its parts add up (tiny size)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "breakdown.py"


@pytest.mark.slow
def test_breakdown_script_runs() -> None:
    cmd = [sys.executable, str(SCRIPT), "--size", "40", "--repeats", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1200).stdout
    seconds = {
        line[:36].strip(): float(line[36:].split()[0]) for line in out.splitlines()[1:] if line
    }
    parts = ["window aggregation (2 N3 blocks)", "embedding + temperature nets"]
    # Printed to 0.01 s: at this tiny size a part may round to 0.
    assert seconds["DnCNN-17"] >= 0 and seconds["N3Net"] > 0
    assert all(seconds[name] >= 0 for name in parts)
    assert sum(seconds[name] for name in parts) <= seconds["N3Net"] + 0.01
