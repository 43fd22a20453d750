"""Super-resolution models: registry entries, shapes at every scale, gradients, geometry."""

from __future__ import annotations

import pytest
import torch

from n3net.inference import Upscaler
from n3net.models import VDSR, N3NetSR, arch_info, create_model, load_model

TINY = {
    "vdsr": {"depth": 4, "features": 8},
    "n3net-sr": {"k": 2, "depth": 3, "features": 8, "embed_features": 8, "search_window": 3},
    "bicubic": {},
}


@pytest.mark.parametrize("arch", sorted(TINY))
def test_registry_says_sr(arch: str) -> None:
    assert arch_info(arch).task == "sr"
    assert arch_info(arch).needs_weights == (arch != "bicubic")


def test_paper_sizes() -> None:
    vdsr = create_model("vdsr")
    assert sum(p.numel() for p in vdsr.parameters()) == 665_921  # 20 layers of 64 features
    assert vdsr.receptive_radius == 20 and len(list(vdsr.modules())) > 20
    model = create_model("n3net-sr")
    assert isinstance(model, N3NetSR) and len(model.blocks) == 3 and len(model.n3) == 2
    assert [b.conv1.in_channels for b in model.blocks] == [1, 64, 64]
    assert [b.conv2.out_channels for b in model.blocks] == [8, 8, 1]
    assert all(len(b.layer1) == 2 * 5 for b in model.blocks)  # depth 7
    assert model.n3[0].k == 7 and model.n3[0].patch_size == 10 and model.n3[0].stride == 5
    assert model.n3[0].search_window == 15
    assert model.receptive_radius == 3 * 7 + 2 * (3 + 7 * 5 + 9)


@pytest.mark.parametrize("arch", ["vdsr", "n3net-sr"])
def test_forward_backward(arch: str) -> None:
    model = create_model(arch, **TINY[arch])
    x = torch.rand(2, 1, 24, 21)
    out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("scale", [2, 3, 4], ids=lambda s: f"x{s}")
@pytest.mark.parametrize("arch", sorted(TINY))
def test_output_is_scale_times_the_input(arch: str, scale: int) -> None:
    model = create_model(arch, **TINY[arch]).eval()
    upscaler = Upscaler(model, scale)
    assert upscaler.upscale_tensor(torch.rand(1, 1, 11, 9)).shape == (1, 1, 11 * scale, 9 * scale)
    assert upscaler.upscale_tensor(torch.rand(2, 3, 8, 10)).shape == (2, 3, 8 * scale, 10 * scale)


def test_vdsr_is_residual_and_bicubic_is_identity() -> None:
    model = VDSR(depth=3, features=4)
    for parameter in model.conv2.parameters():
        torch.nn.init.zeros_(parameter)
    x = torch.rand(1, 1, 6, 6)
    assert torch.equal(model(x), x)
    assert torch.equal(load_model("bicubic")(x), x)


def test_n3net_sr_size_check() -> None:
    with pytest.raises(ValueError, match="n3net-sr needs images of at least"):
        create_model("n3net-sr").check_size(8, 8)


def test_residual_init_starts_as_the_identity_and_learns_everywhere() -> None:
    torch.manual_seed(0)
    model = create_model("n3net-sr", **TINY["n3net-sr"])  # init="residual", the default
    assert "init" not in model.config
    x = torch.rand(2, 1, 24, 21)
    out = model(x)
    assert torch.equal(out, x)  # every VDSR block starts as its residual
    out.sub(x.flip(-1)).square().mean().backward()
    for block in model.blocks:
        assert block.conv2.weight.grad.abs().sum() > 0  # the zero layers learn at once
    assert all(0 <= w <= 1 for n3 in model.n3 for w in n3.logits_bn.weight.tolist())
    assert create_model("n3net-sr", init="he", **TINY["n3net-sr"]).config["init"] == "he"


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ValueError, match="init must be 'he' or 'residual'"):
        create_model("n3net-sr", init="authors")


def test_vdsr_residual_init_starts_as_the_identity() -> None:
    model = create_model("vdsr", init="residual", **TINY["vdsr"])
    x = torch.rand(1, 1, 9, 11)
    assert model.config["init"] == "residual" and torch.equal(model(x), x)
    assert "init" not in create_model("vdsr", **TINY["vdsr"]).config  # "he", VDSR's own
    with pytest.raises(ValueError, match="init must be 'he' or 'residual'"):
        create_model("vdsr", init="zero")
