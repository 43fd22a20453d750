"""benchmarks/correspondences_data.py still runs (a few tiny pairs)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "correspondences_data.py"


def test_script_prints_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(SCRIPT), "--pairs", "3", "--points", "64", "--json", str(out)]
    printed = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert "ms per pair" in printed and "epipolar-near" in printed
    result = json.loads(out.read_text())
    assert result["pairs"] == 3 and result["median_ms_per_pair"] > 0
    assert abs(sum(result[f"share_{k}"] for k in ("inlier", "uniform", "repeated", "near-miss",
                                                  "epipolar-near")) - 1) < 1e-9  # fmt: skip
