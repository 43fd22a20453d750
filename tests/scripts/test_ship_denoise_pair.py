"""scripts/ship_denoise_pair.py: evaluate, compare and ship an equal-steps denoising pair."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n3net.models import create_model, model_metadata, save_model

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
spec = importlib.util.spec_from_file_location("ship_denoise_pair", SCRIPTS / "ship_denoise_pair.py")
assert spec is not None and spec.loader is not None
pair = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pair)

pytest.importorskip("skimage")  # n3net evaluate's SSIM
pytest.importorskip("matplotlib")  # the curves

LOG = "step,epoch,lr,loss,val_psnr,elapsed_s,imgs_per_s\n"


def _run(folder: Path, arch: str, steps: int = 4, sigma: str = "25", **kwargs: int) -> Path:
    folder.mkdir()
    model = create_model(arch, **kwargs)
    metadata = {"task": "denoise", "sigma": sigma, "steps": str(steps), "batch_size": "2",
                "minutes": "0.5", "hardware": "CPU test", "val_psnr": "20.000",
                "protocol": "preset paper, batch 2 of 16x16", "loss": "800 x MSE"}  # fmt: skip
    save_model(model, folder / "model.safetensors", metadata)
    (folder / "summary.json").write_text(json.dumps({"steps": steps}))
    rows = "".join(f"{s},0,1e-3,1,{18 + s / 4},{6 * s},1\n" for s in range(2, steps + 1, 2))
    (folder / "log.csv").write_text(LOG + rows)
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    n3 = _run(tmp_path / "n3", "n3net", n_blocks=2, depth=2, features=8, embed_features=8)
    dn = _run(tmp_path / "dn", "dncnn", depth=3, features=8)
    return n3, dn


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    folders = []
    for name in ("set12", "bsd68"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for index in range(2):
            pixels = rng.integers(0, 256, (30 + index, 34)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
        folders.append(str(folder))
    return folders


def test_evaluates_compares_and_ships_the_pair(
    runs: tuple[Path, Path], data: list[str], tmp_path: Path
) -> None:
    n3, dn = runs
    weights = tmp_path / "weights"
    weights.mkdir()
    # a DnCNN-17 already shipped that the new one cannot beat: it is kept
    shipped = save_model(create_model("dncnn", depth=3, features=8),
                         weights / "dncnn17-gray-sigma25.safetensors",
                         {"sigma": "25", "bsd68_psnr": "99.0"})  # fmt: skip
    out = tmp_path / "out"
    argv = [str(n3), str(dn), "--out", str(out), "--data", *data, "--weights", str(weights)]
    assert pair.main([*argv, "--hardware", "two test CPUs"]) == 0
    results = json.loads((out / "eval.json").read_text())["results"]
    assert {(Path(r["model"]).parent.name, Path(r["data"]).name) for r in results} == {
        (run, d) for run in ("n3", "dn") for d in ("set12", "bsd68")
    }
    gap = (out / "gap.md").read_text().splitlines()
    assert gap[0] == "| data | N3Net | DnCNN-17 | N3Net − DnCNN-17 | paper |"
    assert gap[3].startswith("| BSD68, σ = 25 |") and gap[3].endswith("| +0.07 |")
    assert "| 4 | 19.00 | 19.00 | +0.00 |" in (out / "equal-steps.md").read_text()
    assert (out / "curves.png").stat().st_size > 0
    assert "| 4 | 19.000 (0.4) | 19.000 (0.4) |" in (out / "compare.md").read_text()
    meta = model_metadata(weights / "n3net-gray-sigma25.safetensors")
    assert meta["hardware"] == "two test CPUs" and "bsd68_psnr" in meta
    card = (weights / "n3net-gray-sigma25.md").read_text()
    assert "| DnCNN-17, same steps (this − it) | N3Net (paper) |" in card  # the partner's column
    assert model_metadata(shipped)["bsd68_psnr"] == "99.0"  # kept: the new one is not better
    assert not (weights / "dncnn17-gray-sigma25.md").exists()
    # once the shipped one is worse, the new DnCNN-17 replaces it; the evaluation is reused
    save_model(create_model("dncnn", depth=3, features=8), shipped,
               {"sigma": "25", "bsd68_psnr": "1.0"})  # fmt: skip
    before = (out / "eval.json").stat().st_mtime_ns
    assert pair.main(argv) == 0
    assert (out / "eval.json").stat().st_mtime_ns == before
    assert model_metadata(shipped)["bsd68_psnr"] != "1.0"
    assert "| N3Net, same steps (this − it) |" in (weights / "dncnn17-gray-sigma25.md").read_text()


def test_refuses_runs_that_are_not_a_pair(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n3, dn = runs
    out = ["--out", str(tmp_path / "out"), "--dry-run"]
    assert pair.main([str(dn), str(n3), *out]) == 2  # swapped
    assert "trained dncnn, not n3net" in capsys.readouterr().err
    longer = _run(tmp_path / "longer", "dncnn", steps=6, depth=3, features=8)
    assert pair.main([str(n3), str(longer), *out]) == 2
    assert "made 4 and 6 steps, not the same number" in capsys.readouterr().err
    other = _run(tmp_path / "s50", "dncnn", sigma="50", depth=3, features=8)
    assert pair.main([str(n3), str(other), *out]) == 2
    assert "sigma 25 and 50" in capsys.readouterr().err
    (dn / "summary.json").unlink()
    assert pair.main([str(n3), str(dn), *out]) == 2
    assert "not a finished n3net train run (no summary.json)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was written before the checks passed
