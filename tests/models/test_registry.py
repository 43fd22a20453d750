"""The model registry and the safetensors model-file format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import n3net
from n3net.models import (
    _registry,
    arch_info,
    create_model,
    list_architectures,
    list_pretrained,
    load_model,
    model_metadata,
    register_model,
    save_model,
)

ARCHS = ["concrete", "dncnn", "knn-dncnn", "knn-noisy", "n3net", "n3net-light"]
CLASSIC = ["bm3d", "nlm"]
X = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(3))


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(7)  # the Concrete baseline samples
    with torch.no_grad():
        return model(x)


def test_architectures() -> None:
    denoisers = [arch for arch in list_architectures() if arch_info(arch).task == "denoise"]
    assert denoisers == sorted(ARCHS + CLASSIC)


def test_create_model_records_arch_and_config() -> None:
    model = create_model("n3net-light", k=4)
    assert model.arch == "n3net-light"
    assert model.config["n_blocks"] == 2 and model.config["k"] == 4
    again = create_model(model.arch, **json.loads(json.dumps(model.config)))
    assert again.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}


def test_create_model_unknown() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*n3net-light"):
        create_model("vgg")


def test_register_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("dncnn")(lambda **c: torch.nn.Identity())


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(tmp_path: Path, arch: str) -> None:
    model = create_model(arch)
    model.train()
    model(X)  # move batch-norm running statistics away from their initial values
    model.eval()
    path = save_model(model, tmp_path / f"{arch}.safetensors", {"sigma": "25"})
    loaded = load_model(path)
    assert not loaded.training and loaded.arch == arch and loaded.config == model.config
    assert loaded.metadata["sigma"] == "25"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.testing.assert_close(_forward(loaded, X), _forward(model, X), rtol=0, atol=0)


def test_metadata(tmp_path: Path) -> None:
    model = create_model("dncnn", depth=3, channels=3)
    path = save_model(model, tmp_path / "d.safetensors", {"sigma": "50", "note": "x"})
    meta = model_metadata(path)
    assert meta["n3net_arch"] == "dncnn"
    assert json.loads(meta["n3net_config"])["channels"] == 3
    assert meta["n3net_version"] == n3net.__version__
    assert meta["channels"] == "3" and meta["sigma"] == "50" and meta["note"] == "x"
    header_len = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors, not a pickle
    assert path.read_bytes()[8 : 8 + header_len].startswith(b"{")


def test_save_model_checks(tmp_path: Path) -> None:
    model = create_model("dncnn", depth=3)
    with pytest.raises(ValueError, match="n3net_arch"):
        save_model(model, tmp_path / "a.safetensors", {"n3net_arch": "x"})
    with pytest.raises(ValueError, match="str to str"):
        save_model(model, tmp_path / "a.safetensors", {"sigma": 25})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="create_model"):
        save_model(torch.nn.Conv2d(1, 1, 3), tmp_path / "a.safetensors")
    assert not list(tmp_path.iterdir())


def test_architecture_without_weights() -> None:
    with pytest.raises(ValueError, match="'n3net' has no trained weights; trained models: "):
        load_model("n3net")


def test_unknown_model_lists_trained() -> None:
    with pytest.raises(ValueError, match="unknown model 'foo'; trained models: "):
        load_model("foo")


@pytest.mark.parametrize("name", ["train/ckpt.pt", "model.pth", "051_ckpt.t7"])
def test_pytorch_checkpoints_are_not_model_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    torch.save({"model": {}}, path)
    with pytest.raises(ValueError, match="PyTorch checkpoint.*not an n3net model file"):
        load_model(path)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a safetensors model file"):
        load_model(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="not an n3net model file"):
        model_metadata(plain)


def test_strict_loading(tmp_path: Path) -> None:
    model = create_model("dncnn", depth=3)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    del state["conv2.bias"]
    meta = {"n3net_arch": "dncnn", "n3net_config": json.dumps(model.config)}
    save_file(state, str(tmp_path / "m.safetensors"), metadata=meta)
    with pytest.raises(RuntimeError, match="conv2.bias"):
        load_model(tmp_path / "m.safetensors")


def test_pretrained_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_weights_dir", lambda: tmp_path)
    assert list_pretrained() == []
    model = create_model("dncnn", depth=3)
    save_model(model, tmp_path / "dncnn3-gray-sigma25.safetensors", {"sigma": "25"})
    (tmp_path / "dncnn3-gray-sigma25.md").write_text("# card\n")
    assert list_pretrained() == ["dncnn3-gray-sigma25"]
    assert model_metadata("dncnn3-gray-sigma25")["sigma"] == "25"
    loaded = load_model("dncnn3-gray-sigma25")
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)
    with pytest.raises(ValueError, match="trained models: dncnn3-gray-sigma25"):
        load_model("dncnn")


def test_shipped_weights_have_cards() -> None:
    folder = _registry._weights_dir()
    for name in list_pretrained():
        assert folder.joinpath(f"{name}.md").is_file(), f"{name} has no model card"
        meta = model_metadata(name)
        task = arch_info(meta["n3net_arch"]).task
        if task == "sr":  # super-resolution: named <arch>-x<scales>, results per set and scale
            scales = meta["scales"].split(",")
            assert name == f"{meta['n3net_arch']}-x{''.join(scales)}"
            assert all(f"set5_x{s}_psnr" in meta for s in scales), name
        elif task == "correspondences":  # named <arch>-synth, synthetic-test pose mAP
            assert name == f"{meta['n3net_arch']}-synth" and meta["data"] == "synthetic"
            assert "synthetic_map20" in meta and "test_split" in meta, name
        else:
            assert meta["n3net_arch"] in ARCHS and "sigma" in meta


def test_the_same_budget_pair_is_shipped() -> None:
    """The equal-steps pair loads by name; files stay small; each card records its measured
    PSNR, and the default for sigma 25 is the better-measured model, N3Net."""
    from n3net.inference import default_model

    folder = _registry._weights_dir()
    psnr = {}
    for name, arch in (("n3net-gray-sigma25", "n3net"), ("dncnn17-gray-sigma25", "dncnn")):
        assert folder.joinpath(f"{name}.safetensors").stat().st_size < 5 * 2**20
        meta = model_metadata(name)
        assert meta["n3net_arch"] == arch and meta["sigma"] == "25"
        for key in ("set12_psnr", "bsd68_psnr", "urban100_psnr", "steps", "minutes", "hardware"):
            assert key in meta, (name, key)
        psnr[name] = float(meta["bsd68_psnr"])
        card = folder.joinpath(f"{name}.md").read_text()
        assert f"{psnr[name]:.2f}" in card, f"{name}: card lacks its BSD68 PSNR"
    # both trained for the same number of steps (the paper's comparison), and N3Net wins
    metas = [model_metadata(n) for n in psnr]
    assert metas[0]["steps"] == metas[1]["steps"]
    assert default_model(25) == max(psnr, key=psnr.get) == "n3net-gray-sigma25"
    model = load_model("n3net-gray-sigma25")
    with torch.inference_mode():
        out = model(torch.rand(1, 1, 40, 44))
    assert out.shape == (1, 1, 40, 44) and torch.isfinite(out).all()


def test_saved_model_files_get_the_umask_mode(tmp_path: Path) -> None:
    """safetensors creates 0600 files; a model file gets the mode any new file gets."""
    import os

    old = os.umask(0o022)
    try:
        path = save_model(create_model("dncnn", depth=3, features=8), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
