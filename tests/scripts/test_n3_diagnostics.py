"""scripts/n3_diagnostics.py: selection statistics and ablations of a model's N3 blocks."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from n3net.models import create_model, save_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "n3_diagnostics.py"
spec = importlib.util.spec_from_file_location("n3_diagnostics", SCRIPT)
assert spec is not None and spec.loader is not None
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)


def _tiny_n3net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(
        "n3net", k=2, patch_size=4, stride=2, search_window=5, depth=2, features=8
    ).eval()


def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (22, 26), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_variants_change_the_output_and_are_undone() -> None:
    model = _tiny_n3net()
    x = torch.rand(1, 1, 22, 26)
    with torch.no_grad():
        before = model(x)
        outputs = {}
        for name in diag.VARIANTS:
            with diag.variant(model, name):
                outputs[name] = model(x)
        after = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # every change is undone
    torch.testing.assert_close(outputs["trained"], before, rtol=0, atol=0)
    for name in ("hard", "uniform", "self"):
        assert not torch.allclose(outputs[name], before), name


def test_self_variant_feeds_the_input_as_every_neighbour() -> None:
    model = _tiny_n3net()
    block = diag.n3_blocks(model)[0]
    x = torch.rand(1, block.in_channels, 12, 14)
    with torch.no_grad(), diag.variant(model, "self"):
        out = block(x)
    # Residual output: the input, then k volumes of (neighbour - input) = 0.
    torch.testing.assert_close(out[:, : block.in_channels], x)
    assert (out[:, block.in_channels :] == 0).all()


def test_stats_count_rounds_and_bound_effective_candidates() -> None:
    model = _tiny_n3net()
    stats = [diag._Stats(b.k) for b in diag.n3_blocks(model)]
    with torch.no_grad(), diag.variant(model, "trained", stats):
        model(torch.rand(2, 1, 22, 26))
    summary = stats[0].summary()
    assert len(summary["rounds"]) == 2
    for r in summary["rounds"]:
        # 5 x 5 window minus the query: between 1 and 24 candidates carry weight.
        assert 1.0 <= r["effective_candidates_median"] <= 24.0 + 1e-4
        assert 0.0 < r["top_weight_median"] <= 1.0
    assert list(summary["temperature_quantiles"]) == ["0.05", "0.25", "0.5", "0.75", "0.95"]


def test_uniform_variant_spreads_the_weights() -> None:
    model = _tiny_n3net()
    x = torch.rand(1, 1, 22, 26)
    eff = {}
    for name in ("trained", "uniform"):
        stats = [diag._Stats(b.k) for b in diag.n3_blocks(model)]
        with torch.no_grad(), diag.variant(model, "trained", stats):
            if name == "uniform":
                for b in diag.n3_blocks(model):
                    b.temperature_scale *= 1e6
            model(x)
            if name == "uniform":
                for b in diag.n3_blocks(model):
                    b.temperature_scale /= 1e6
        eff[name] = stats[0].summary()["rounds"][0]["effective_candidates_median"]
    assert eff["uniform"] > eff["trained"]
    assert eff["uniform"] > 20.0  # close to all 24 candidates


def test_main_on_a_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_file = tmp_path / "m.safetensors"
    save_model(_tiny_n3net(), model_file)
    data = _images(tmp_path / "data", 3)
    out = tmp_path / "d.json"
    code = diag.main([str(model_file), "--data", str(data), "--images", "2", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["images"] == ["0.png", "1.png"]
    assert set(result["mean_psnr"]) == set(diag.VARIANTS)
    assert len(result["blocks"]) == 2  # 3 DnCNN blocks, 2 N3 blocks
    assert "block 1 temperature quantiles" in capsys.readouterr().out


def test_main_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dncnn = tmp_path / "d.safetensors"
    save_model(create_model("dncnn", depth=3, features=8), dncnn)
    data = _images(tmp_path / "data")
    assert diag.main([str(dncnn), "--data", str(data)]) == 2
    assert "no N3 blocks" in capsys.readouterr().err
    assert diag.main([str(dncnn), "--data", str(tmp_path / "missing")]) == 2
    assert diag.main([str(dncnn), "--data", str(data), "--images", "0"]) == 2
    assert "--images" in capsys.readouterr().err


def test_load_any_reads_a_training_checkpoint(tmp_path: Path) -> None:
    from n3net.train.checkpoint import CHECKPOINT_VERSION

    model = _tiny_n3net()
    kwargs = dict(k=2, patch_size=4, stride=2, search_window=5, depth=2, features=8)
    state = {
        "version": CHECKPOINT_VERSION,
        "config": {"model": {"arch": "n3net", "kwargs": kwargs}},
        "model": model.state_dict(),
    }
    torch.save(state, tmp_path / "last.pt")
    loaded = diag.load_any(str(tmp_path / "last.pt")).eval()
    x = torch.rand(1, 1, 22, 26)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
