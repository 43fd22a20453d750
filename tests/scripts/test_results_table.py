"""scripts/results_table.py: denoising and super-resolution tables from evaluate JSON files."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "results_table.py"
spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
assert spec is not None and spec.loader is not None
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)


def _sr(model: str, data: str, scale: int, psnr: float) -> dict:
    summary = {"mean_psnr": psnr, "mean_ssim": 0.9, "n_images": 5}
    return {"model": model, "data": f"/d/{data}", "scale": scale, "summary": summary}


def test_sr_section_is_written_and_rewritten(tmp_path: Path) -> None:
    rows = [_sr("bicubic", "set5", s, 30.0) for s in (2, 3, 4)]
    rows += [_sr("/r/vdsr/model.safetensors", "set5", s, 31.0 + s) for s in (2, 3, 4)]
    rows += [_sr("/r/n3net-sr/model.safetensors", "set5", s, 31.1 + s) for s in (2, 3, 4)]
    rows.append({"model": "dncnn", "data": "/d/set12", "sigma": 25, "summary": {"mean_psnr": 1}})
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"results": rows}))
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nprose\n")
    assert results_table.main(["--task", "sr", str(results), "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Results\n\nprose\n\n<!-- sr-results:begin -->\n")
    assert "| vdsr | Set5 (5) | 33.00 / 0.9000 (37.53 / 0.9587) |" in text
    assert "| n3net-sr | Set5 (5) | 33.10 / 0.9000 (37.57) |" in text
    assert "| Set5 | +0.10 | +0.10 | +0.10 |" in text and "| Set5, paper | +0.04 |" in text
    # A second write replaces the section and keeps what surrounds it.
    doc.write_text(text + "\nafter\n")
    assert results_table.main(["--task", "sr", str(results), "--write", str(doc)]) == 0
    again = doc.read_text()
    assert again.count("sr-results:begin") == 1 and again.endswith("\nafter\n")


def test_denoise_table_skips_other_tasks(tmp_path: Path, capsys) -> None:
    rows = [
        {"model": "dncnn17", "data": "/d/set12", "sigma": 25, "summary": {"mean_psnr": 30.1}},
        _sr("bicubic", "set5", 2, 33.7),
        {"model": "ransac", "data": "/d/pairs", "summary": {}},
    ]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"results": rows}))
    assert results_table.main([str(results)]) == 0
    out = capsys.readouterr().out
    assert "| dncnn17 | 25 | 30.10 / 30.44 |" in out and "bicubic" not in out
