"""Tests for n3net.blocks.embed: the embedding and temperature networks of N3 blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from n3net.blocks.embed import conv_embedding, mlp_embedding


def test_conv_embedding_authors_layout() -> None:
    net = conv_embedding(8, 8)
    # The authors' embedcnn: convs at 0, 3, 6 (only the last with bias), batch norms at 1, 4.
    assert [type(m) for m in net] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Conv2d,
    ]
    keys = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    bn = {
        f"{i}.{name}" for i in (1, 4) for name in ("weight", "bias", "running_mean", "running_var")
    }
    assert keys == {"0.weight", "3.weight", "6.weight", "6.bias"} | bn
    assert net[0].weight.shape == (64, 8, 3, 3) and net[6].weight.shape == (8, 64, 3, 3)
    assert all(m.eps == 1e-5 for m in net if isinstance(m, nn.BatchNorm2d))
    # 8*64*9 + 64*64*9 + 64*8*9 + 8 conv weights and bias, 2 * 2*64 batch-norm parameters.
    assert sum(p.numel() for p in net.parameters()) == 4608 + 36864 + 4608 + 8 + 256


@pytest.mark.parametrize(
    ("batch", "height", "width"), [(0, 9, 9), (1, 1, 1), (3, 17, 23)], ids=["b0", "1px", "odd"]
)
def test_conv_embedding_shapes(batch: int, height: int, width: int, device) -> None:
    net = conv_embedding(3, 5, features=16).to(device).eval()
    assert net(torch.randn(batch, 3, height, width, device=device)).shape == (
        batch,
        5,
        height,
        width,
    )


def test_conv_embedding_options() -> None:
    plain = conv_embedding(2, 1, features=4, depth=2, batchnorm=False)
    assert [type(m) for m in plain] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert plain[0].bias is not None  # no batch norm after it: the conv keeps its bias
    single = conv_embedding(2, 1, depth=1)
    assert len(single) == 1 and single[0].weight.shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="depth"):
        conv_embedding(2, 1, depth=0)


def test_conv_embedding_is_local() -> None:
    # Three 3x3 convs: an output pixel sees a 7x7 neighbourhood, nothing further.
    net = conv_embedding(1, 1, features=4).double().eval()
    x = torch.randn(1, 1, 15, 15, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, 7, 7].backward()
    touched = x.grad[0, 0] != 0
    assert not touched[:4].any() and not touched[11:].any()
    assert not touched[:, :4].any() and not touched[:, 11:].any()


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_embedding_shapes(batchnorm: bool, device) -> None:
    net = mlp_embedding(4, 6, features=16, batchnorm=batchnorm).to(device)
    assert net(torch.randn(3, 10, 4, device=device)).shape == (3, 10, 6)
    assert net.eval()(torch.randn(0, 10, 4, device=device)).shape == (0, 10, 6)


def test_mlp_embedding_batchnorm_over_items() -> None:
    net = mlp_embedding(4, 2, features=8, depth=2, batchnorm=True)
    assert net[0].bias is None
    x = torch.randn(3, 10, 4)
    hidden = net[1](net[0](x))  # statistics over all 30 items of all sets
    flat = hidden.reshape(-1, 8)
    torch.testing.assert_close(flat.mean(0), torch.zeros(8), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.var(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="depth"):
        mlp_embedding(2, 1, depth=0)
