"""scripts/compare_runs.py: a validation metric by step and by minutes from run folders."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
assert spec is not None and spec.loader is not None
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

HEADER = "step,epoch,lr,loss,val_psnr,elapsed_s,imgs_per_s\n"


def _run(folder: Path, rows: list[str]) -> Path:
    folder.mkdir()
    (folder / "log.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    return folder


def test_table_by_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", ["10,0.1,1e-3,0.5,,6,1", "20,0.2,1e-3,0.4,25.5,120,1"])
    b = _run(tmp_path / "b", ["20,0.1,1e-3,0.5,24.25,60,1", "40,0.2,1e-3,0.4,26,180,1"])
    assert compare_runs.main([str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| step | a: PSNR (minutes) | b: PSNR (minutes) |"
    assert lines[2] == "| 20 | 25.500 (2.0) | 24.250 (1.0) |"
    assert lines[3] == "| 40 |  | 26.000 (3.0) |"


def test_missing_log_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_runs.main([str(tmp_path)]) == 2
    assert "log.csv not found" in capsys.readouterr().err


def test_png_without_matplotlib_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    a = _run(tmp_path / "a", ["20,0.2,1e-3,0.4,25.5,120,1"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert compare_runs.main([str(a), "--png", str(tmp_path / "c.png")]) == 2
    assert "--png needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_existing_png_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run(tmp_path / "a", ["20,0.2,1e-3,0.4,25.5,120,1"])
    png = tmp_path / "c.png"
    png.write_bytes(b"mine")
    assert compare_runs.main([str(a), "--png", str(png)]) == 2
    assert "pass --force" in capsys.readouterr().err and png.read_bytes() == b"mine"


MAP_HEADER = "step,epoch,lr,loss,val_map,val_map5,val_map10,val_f1,elapsed_s,imgs_per_s\n"


def test_correspondence_runs_compare_by_map_and_resumed_steps_count_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a"
    a.mkdir()
    rows = ["50,0.1,1e-3,0.5,,,,,30,1", "100,0.2,1e-3,0.4,0.25,0.1,0.2,0.6,60,1"]
    resumed = ["100,0.2,1e-3,0.4,0.3,0.1,0.2,0.6,90,1"]  # logged again after a resume
    (a / "log.csv").write_text(MAP_HEADER + "\n".join(rows + resumed) + "\n")
    assert compare_runs.main([str(a)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| step | a: mAP (minutes) |"
    assert lines[2:] == ["| 100 | 0.300 (1.5) |"]
    assert compare_runs.main([str(a), "--metric", "val_f1"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| 100 | 0.600 (1.5) |"


def test_an_unknown_metric_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run(tmp_path / "a", ["20,0.2,1e-3,0.4,25.5,120,1"])
    assert compare_runs.main([str(a), "--metric", "val_ssim"]) == 2
    assert "has no val_ssim column" in capsys.readouterr().err
    b = tmp_path / "b"
    b.mkdir()
    (b / "log.csv").write_text("step,loss,elapsed_s\n1,0.5,3\n")
    assert compare_runs.main([str(b)]) == 2
    assert "no val_psnr or val_map column; pass --metric" in capsys.readouterr().err
