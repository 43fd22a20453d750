"""scripts/set_n3_diagnostics.py: the set N3 block's first-round selection, per tier."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from n3net.data.correspondences import synthetic_pairs
from n3net.data.synthetic import SyntheticConfig
from n3net.models import create_model, save_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "set_n3_diagnostics.py"
spec = importlib.util.spec_from_file_location("set_n3_diagnostics", SCRIPT)
assert spec is not None and spec.loader is not None
diagnostics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diagnostics)

TINY = {"channels": 16, "depth": 4, "n3_block": 2}


def _model(temperature_bias: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("cnnet-n3", **TINY).eval()
    last = [m for m in model.n3.temperature.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(temperature_bias)
    return model


def test_first_round_is_a_softmax_without_self() -> None:
    layer = _model(1.0).n3
    t, w = diagnostics.first_round(layer, torch.randn(1, 30, layer.channels))
    assert t.shape == (30,) and w.shape == (30, 30)
    torch.testing.assert_close(w.sum(1), torch.ones(30))
    assert torch.all(w.diagonal() == 0)


def test_uniform_weights_are_as_pure_as_the_inlier_share() -> None:
    pairs = synthetic_pairs(1000, 4, SyntheticConfig(num_points=64))
    flat = diagnostics.diagnose(_model(0.0), pairs)  # T near 0: near-uniform weights
    sharp = diagnostics.diagnose(_model(1e4), pairs)  # a large T: close to hard KNN
    assert flat["all"]["pairs"] == 4 and set(flat) >= {"all"}
    assert flat["all"]["effective"] > 0.9 * 63  # nearly uniform over the 63 candidates
    assert abs(flat["all"]["purity"] - flat["all"]["share"]) < 0.02
    assert sharp["all"]["effective"] < 0.2 * flat["all"]["effective"]
    assert np.isfinite(sharp["all"]["purity"])


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n3, plain = tmp_path / "n3.safetensors", tmp_path / "plain.safetensors"
    save_model(_model(0.0), n3)
    save_model(create_model("cnnet", channels=8, depth=2), plain)
    pair = ["--seed", "1000", "--pairs", "3", "--points", "48"]
    assert diagnostics.main(["--model", str(n3), *pair]) == 0
    out = capsys.readouterr().out
    assert "| tier | pairs | median T |" in out and "\n| all | 3 |" in out
    assert diagnostics.main(["--model", str(plain), *pair]) == 2
    assert "has no set N3 block" in capsys.readouterr().err
    assert diagnostics.main(["--model", str(tmp_path / "missing.safetensors"), *pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("set_n3_diagnostics: ") and err.count("\n") == 1
