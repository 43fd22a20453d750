"""scripts/plot_matches.py: one pair's matches coloured by prediction and label."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from n3net.models import create_model, save_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "plot_matches.py"
spec = importlib.util.spec_from_file_location("plot_matches", SCRIPT)
assert spec is not None and spec.loader is not None
plot_matches = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_matches)

PAIR = ["--seed", "1000", "--index", "3", "--points", "200"]


def _counts(out: str) -> dict[str, int]:
    words = out.split(": ", 1)[1].strip().split(", ")
    return {w.split(" ", 1)[1]: int(w.split(" ", 1)[0]) for w in words}


def test_oracle_has_no_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "deep" / "oracle.png"
    assert plot_matches.main(["--model", "oracle", *PAIR, "--out", str(target)]) == 0
    counts = _counts(capsys.readouterr().out)
    assert counts["false positive"] == counts["false negative"] == 0
    assert counts["true positive"] > 0 and sum(counts.values()) == 200
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = target.read_bytes()
    assert plot_matches.main(["--model", "eight-point", *PAIR, "--out", str(target)]) == 2
    assert "pass --force" in capsys.readouterr().err and target.read_bytes() == before
    assert plot_matches.main(["--model", "oracle", *PAIR, "--out", str(target), "--force"]) == 0


def test_ransac_and_a_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    model = tmp_path / "tiny.safetensors"
    save_model(create_model("cnnet", channels=8, depth=2), model)
    names = [str(model)] + (["ransac"] if importlib.util.find_spec("cv2") else [])
    for name in names:
        target = tmp_path / f"{Path(name).stem}.png"
        assert plot_matches.main(["--model", name, *PAIR, "--out", str(target)]) == 0
        assert sum(_counts(capsys.readouterr().out).values()) == 200 and target.is_file()


def test_categories() -> None:
    predicted = np.array([True, True, False, False])
    truth = np.array([True, False, True, False])
    names = [plot_matches.CATEGORIES[i][0] for i in plot_matches.categories(predicted, truth)]
    assert names == ["true positive", "false positive", "false negative", "true negative"]


def test_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    assert plot_matches.main(["--model", "no-such-model", *PAIR]) == 2
    err = capsys.readouterr().err
    assert "unknown correspondence model 'no-such-model'" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert plot_matches.main(["--model", "oracle", *PAIR, "--out", str(tmp_path / "a.png")]) == 2
    assert "needs matplotlib: pip install 'n3net[train]'" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()
