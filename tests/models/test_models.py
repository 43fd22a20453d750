"""Denoising models: forward/backward of every architecture, layouts, parameter counts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from n3net.models import (
    DnCNN,
    DnCNNBlock,
    KNNDenoiser,
    N3NetDenoiser,
    arch_info,
    create_model,
    init_dncnn_,
    list_architectures,
    save_model,
)

DENOISERS = [arch for arch in list_architectures() if arch_info(arch).task == "denoise"]
TRAINABLE = [arch for arch in DENOISERS if arch_info(arch).needs_weights]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", DENOISERS)
def test_every_model_declares_its_geometry(arch: str) -> None:
    model = create_model(arch)
    assert isinstance(model.receptive_radius, int) and model.receptive_radius > 0
    assert model.scale == 1
    assert model.patch_grid is None or len(model.patch_grid) == 2
    assert model.memory_per_pixel > 0
    model.check_size(40, 40)  # large enough for every model


@pytest.mark.parametrize(
    "arch, config",
    [
        ("dncnn", dict(depth=4, features=4)),
        (
            "n3net",
            dict(
                k=2,
                depth=2,
                features=4,
                embed_features=4,
                embed_depth=2,
                patch_size=3,
                stride=2,
                search_window=3,
                n_blocks=2,
            ),
        ),
    ],
    ids=["dncnn", "n3net"],
)
def test_receptive_radius_bounds_the_influence(arch: str, config: dict) -> None:
    """A pixel changes no output farther away than the declared radius (DnCNN: exactly)."""
    torch.manual_seed(0)
    model = create_model(arch, **config).eval()
    radius = model.receptive_radius
    size = 2 * radius + 21
    x = torch.rand(1, 1, size, size, dtype=torch.float64)
    model.double()
    bumped = x.clone()
    centre = size // 2
    bumped[..., centre, centre] += 1.0
    with torch.no_grad():
        changed = (model(bumped) - model(x)).abs()[0, 0] > 1e-12
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = int(max((rows - centre).abs().max(), (cols - centre).abs().max()))
    assert reach <= radius
    if arch == "dncnn":
        assert reach == radius


@pytest.mark.parametrize("arch", TRAINABLE)
def test_forward_backward(arch: str) -> None:
    model = create_model(arch).train()
    x = torch.rand(2, 1, 40, 40)  # 7x7 patch grid: 48 candidates in the 15x15 window
    out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    frozen = getattr(model, "predenoiser", None)
    frozen_ids = {id(p) for p in frozen.parameters()} if frozen is not None else set()
    for name, p in model.named_parameters():
        if id(p) in frozen_ids:
            assert not p.requires_grad and p.grad is None, name
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    ("arch", "count", "paper"),
    [("dncnn", 556_097, 556e3), ("n3net", 705_511, 705.5e3), ("n3net-light", 427_348, 427e3)],
)
def test_parameter_counts(arch: str, count: int, paper: float) -> None:
    n = _n_params(create_model(arch))
    assert n == count
    assert abs(n - paper) / paper < 1e-3


def test_dncnn18_and_colour() -> None:
    assert _n_params(create_model("dncnn", depth=18)) == 556_097 + 64 * 64 * 9 + 128
    model = create_model("dncnn", channels=3).eval()
    assert model(torch.rand(1, 3, 13, 17)).shape == (1, 3, 13, 17)
    n3 = create_model("n3net", channels=3, k=3).eval()
    assert n3(torch.rand(1, 3, 31, 27)).shape == (1, 3, 31, 27)


def test_n3net_layout() -> None:
    model = N3NetDenoiser()
    keys = set(model.state_dict())
    layer1 = {k.split(".")[3] for k in keys if k.startswith("blocks.0.layer1.")}
    assert layer1 == {"0", "1", "3", "4", "6", "7", "9", "10"}
    assert not any(".bn1." in k for k in keys)
    for sub in ("embedding.6.bias", "temperature_net.6.bias", "logits_bn.running_var"):
        assert f"n3.1.{sub}" in keys
    assert [b.conv1.in_channels for b in model.blocks] == [1, 64, 64]
    assert [b.conv2.out_channels for b in model.blocks] == [8, 8, 1]
    light = create_model("n3net-light", k=4, nl_channels=6)
    assert len(light.blocks) == 2 and len(light.n3) == 1
    assert light.blocks[1].conv1.in_channels == 6 * 5


def test_dncnn_block_residual() -> None:
    block = DnCNNBlock(5, 3, depth=3, features=4)
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    x = torch.randn(2, 5, 6, 7)
    torch.testing.assert_close(block(x), x[:, :3])
    wide = DnCNNBlock(1, 8, depth=2, features=4)
    nn.init.zeros_(wide.conv2.weight)
    nn.init.zeros_(wide.conv2.bias)
    out = wide(x[:, :1])
    torch.testing.assert_close(out[:, :1], x[:, :1])
    assert (out[:, 1:] == 0).all()
    plain = DnCNN(depth=3, residual=False)
    nn.init.zeros_(plain.conv2.weight)
    nn.init.zeros_(plain.conv2.bias)
    assert (plain(x[:, :1]) == 0).all()


def test_init_dncnn() -> None:
    model = DnCNN(depth=4, features=128, init="kaiming")
    w = model.layer1[0].weight
    assert abs(w.std().item() - (2 / (128 * 9)) ** 0.5) < 1e-3
    assert (model.conv1.bias == 0).all() and (model.layer1[1].weight == 1).all()
    init_dncnn_(model, "orthogonal")
    flat = model.layer1[0].weight.reshape(128, -1)
    gain2 = 2.0  # relu gain squared
    torch.testing.assert_close(flat @ flat.T, gain2 * torch.eye(128), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="method"):
        init_dncnn_(model, "xavier")  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["dncnn", "n3net", "knn-noisy"])
def test_input_checks(arch: str) -> None:
    model = create_model(arch)
    with pytest.raises(ValueError, match=r"input must be \(B, 1, H, W\), got \(1, 3, 40, 40\)"):
        model(torch.rand(1, 3, 40, 40))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="depth"):
        DnCNN(depth=1)
    with pytest.raises(ValueError, match="n_blocks"):
        N3NetDenoiser(n_blocks=0)
    with pytest.raises(ValueError, match="match"):
        KNNDenoiser(match="bm3d")  # type: ignore[arg-type]


def test_n3net_image_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        create_model("n3net").eval()(torch.rand(1, 1, 12, 12))


def test_knn_noisy_matches_on_the_input() -> None:
    model = create_model("knn-noisy").eval()
    assert _n_params(model) == _n_params(create_model("n3net")) - 2 * 88_651
    assert all(isinstance(b.embedding, nn.Identity) and b.temperature_net is None for b in model.n3)
    assert all(b.knn.rule == "hard" and b.logits_bn is None for b in model.n3)
    # Hand check on a 3x3 grid of non-overlapping 2x2 patches, k = 1: neighbour 1 of each
    # patch is the Y patch at the position of the nearest *guide* patch.
    small = create_model("knn-noisy", k=1, patch_size=2, stride=2, search_window=3, depth=2)
    guide, values = torch.rand(1, 1, 6, 6), torch.rand(1, 8, 6, 6)
    out = small.n3[0](guide, values=values)
    assert out.shape == (1, 16, 6, 6)
    patches = [(i, j) for i in range(3) for j in range(3)]
    for i, j in patches:
        q = guide[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        dist = {
            (a, b): ((guide[0, 0, 2 * a : 2 * a + 2, 2 * b : 2 * b + 2] - q) ** 2).sum().item()
            for a, b in patches
            if (a, b) != (i, j)
        }
        a, b = min(dist, key=dist.get)
        want = values[0, :, 2 * a : 2 * a + 2, 2 * b : 2 * b + 2]
        got = out[0, 8:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        torch.testing.assert_close(got, want - values[0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2])


def test_knn_dncnn_predenoiser(tmp_path) -> None:
    model = create_model("knn-dncnn")
    pre = model.predenoiser
    assert isinstance(pre, DnCNN) and len(pre.layer1) == 15 * 3
    model.train()
    assert model.training and not pre.training
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(model.guide(x), pre(x))
    trained = DnCNN()
    save_model(trained, tmp_path / "dncnn.safetensors")
    model.load_predenoiser(tmp_path / "dncnn.safetensors")
    assert torch.equal(pre.conv1.weight, trained.conv1.weight)
    with pytest.raises(ValueError, match="no pre-denoiser"):
        create_model("knn-noisy").load_predenoiser(trained)
    free = create_model("knn-dncnn", freeze_predenoiser=False).train()
    assert free.predenoiser.training and all(p.requires_grad for p in free.parameters())


def test_concrete_is_stochastic() -> None:
    model = create_model("concrete").eval()
    assert all(b.knn.rule == "concrete" for b in model.n3)
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(1)
        b = model(x)
        c = model(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_n3net_inference_path_equals_autograd_path() -> None:
    """Without autograd the chain frees wide inputs early (forward_consume); same numbers."""
    model = create_model("n3net", depth=3, features=8, embed_features=8, search_window=5).eval()
    x = torch.rand(2, 1, 47, 52)
    with torch.no_grad():
        fast = model(x)
    reference = model(x)
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-5, atol=1e-6)


def _untrained_error(arch: str, init: str, **config: Any) -> float:
    """Training-mode MSE of a freshly built model (seed 0) on a fixed noisy crop (its own: 0.01)."""
    from n3net.models import create_model

    torch.manual_seed(0)
    clean = torch.rand(2, 1, 40, 40)
    noisy = clean + 0.1 * torch.randn(2, 1, 40, 40)
    torch.manual_seed(0)
    model = create_model(arch, init=init, **config).train()
    with torch.no_grad():
        return float(((model(noisy) - clean) ** 2).mean())


def test_n3net_authors_init_starts_near_identity() -> None:
    from n3net.models import create_model

    small = {"depth": 3, "features": 16, "search_window": 5}
    losses = {init: _untrained_error("n3net", init, **small) for init in ("dncnn", "authors")}
    assert losses["authors"] < 0.2 * losses["dncnn"]
    model = create_model("n3net", init="authors", features=16)
    norms = [m for m in model.blocks.modules() if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([m.weight.detach() for m in norms])
    assert float(scales.min()) >= 0.025 and float(scales.max()) < 0.5
    for n3 in model.n3:
        assert 0.0 <= float(n3.logits_bn.weight.detach()) <= 1.0
    assert "init" not in model.config  # the default
    assert create_model("n3net", features=16).config == model.config
    assert create_model("n3net", init="dncnn").config["init"] == "dncnn"
    with pytest.raises(ValueError, match="init must be 'dncnn' or 'authors', got 'x'"):
        create_model("n3net", init="x")


def test_dncnn_authors_init_starts_closer_to_the_input() -> None:
    from n3net.models import create_model

    losses = {init: _untrained_error("dncnn", init) for init in ("kaiming", "authors")}  # DnCNN-17
    assert losses["authors"] < 0.6 * losses["kaiming"]  # 0.40 against 0.84 (noisy input: 0.01)
    model = create_model("dncnn", init="authors", features=16)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([m.weight.detach() for m in norms])
    assert float(scales.min()) >= 0.025 and float(scales.max()) < 0.5
    assert "init" not in model.config  # the default
    assert create_model("dncnn", init="kaiming").config["init"] == "kaiming"
    with pytest.raises(ValueError, match="init must be 'kaiming' or 'authors', got 'x'"):
        create_model("dncnn", init="x")
