"""benchmarks/set_backward.py runs and reports both backward passes (tiny sizes)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "set_backward.py"


def test_script_prints_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "set.json"
    cmd = [sys.executable, str(SCRIPT), "--batch", "2", "--points", "40", "--repeats", "1",
           "--json", str(out)]  # fmt: skip
    printed = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert "rounds fwd+bwd" in printed and "context norm by the formula" in printed
    result = json.loads(out.read_text())
    assert result["points"] == 40 and result["step_s_cnnet"] > 0
    assert result["ratio_norm_step_time"] > 0 and result["ratio_step_time"] > 0
    # Counted exactly: the analytic rounds keep the weights (B, N, K, N) float32, each updating
    # round's top index (int64) and 1 - w (float32), and the mask's masked_fill its bool mask.
    b, n, k = 2, 40, 3
    analytic = b * n * k * n * 4 + (k - 1) * b * n * (8 + 4) + b * n * n
    assert result["rounds_saved_mb_analytic"] * 2**20 == analytic
    assert result["rounds_saved_mb_autograd"] * 2**20 > 2 * analytic


def test_script_rejects_bad_sizes() -> None:
    cmd = [sys.executable, str(SCRIPT), "--points", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--points > --k" in done.stderr
