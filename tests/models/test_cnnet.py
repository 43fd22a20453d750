"""CNNet and CNNet + N3: parameter counts, padding invariance, gradients, model files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from n3net.models import CNNet, arch_info, create_model, load_model, save_model
from n3net.models.cnnet import MaskedBatchNorm, SetN3Layer, context_norm, context_norm_reference

TINY = dict(channels=16, depth=4, embed_features=8, embed_channels=4)


def _tiny(arch: str) -> torch.nn.Module:
    """A small model of the architecture (the N3 layer after block 2 of 4)."""
    extra = {"n3_block": 2} if arch == "cnnet-n3" else {}
    return create_model(arch, **TINY, **extra)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch, count", [("cnnet", 397_057), ("cnnet-n3", 498_885)])
def test_registered_with_the_original_parameter_counts(arch: str, count: int) -> None:
    assert arch_info(arch).task == "correspondences" and arch_info(arch).needs_weights
    model = create_model(arch)
    assert _n_params(model) == count
    if arch == "cnnet-n3":
        assert _n_params(model.n3.embedding) == 67_296
        assert _n_params(model.n3.temperature) == 58_244
        assert _n_params(model.blocks[5]) == 9_312  # block 6 narrowed to 32 channels


def test_authors_init_std() -> None:
    torch.manual_seed(0)
    model = CNNet()
    weight = model.blocks[0].linear1.weight
    assert weight.std().item() == pytest.approx(2 / 128 * 0.88, rel=0.05)  # truncated at 2 std
    assert weight.abs().max() <= 2 * 2 / 128 + 1e-7 and model.blocks[0].linear1.bias.eq(0).all()


def _pairs(sizes: list[int], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(1, n, 4, generator=gen) * 0.3 for n in sizes]


def _padded(pairs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(p.shape[1] for p in pairs)
    xs = torch.zeros(len(pairs), longest, 4, dtype=pairs[0].dtype)
    mask = torch.zeros(len(pairs), longest, dtype=torch.bool)
    for row, p in enumerate(pairs):
        xs[row, : p.shape[1]], mask[row, : p.shape[1]] = p[0], True
    xs[~mask] = 7.0  # padding values must not matter
    return xs, mask


@pytest.mark.parametrize("arch", ["cnnet", "cnnet-n3"])
def test_padded_batch_gives_each_pairs_own_logits(arch: str) -> None:
    torch.manual_seed(1)
    model = _tiny(arch).double()
    with torch.no_grad():  # some training so the running statistics are not the identity
        for _ in range(3):
            model(torch.randn(2, 20, 4, dtype=torch.float64) * 0.3)
    model.eval()
    pairs = [p.double() for p in _pairs([13, 30, 21])]
    xs, mask = _padded(pairs)
    with torch.no_grad():
        together = model(xs, mask)
        for row, pair in enumerate(pairs):
            alone = model(pair)[0]
            n = pair.shape[1]
            assert torch.allclose(together[row, :n], alone, atol=1e-10), row
            assert together[row, n:].eq(0).all()


def test_training_mode_statistics_ignore_padding() -> None:
    bn = MaskedBatchNorm(3)
    x = torch.randn(2, 10, 3)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    padded = x.clone()
    padded[~mask] = 100.0
    out = bn(padded, mask)
    real = x[mask]  # (16, 3)
    expected = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + 1e-3)
    assert torch.allclose(out[mask], expected, atol=1e-5)
    assert torch.allclose(bn.running_mean, 0.01 * real.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, 0.99 + 0.01 * real.var(0), atol=1e-6)


@pytest.mark.parametrize("arch", ["cnnet", "cnnet-n3"])
def test_a_full_mask_gives_the_unmasked_result_and_statistics(arch: str) -> None:
    # Without padding the model runs the fused unmasked normalisations; the masked path (any
    # padding) must agree with them: logits, gradients and the running statistics (float64:
    # the relaxed selection amplifies float32 rounding in the gradients).
    torch.manual_seed(0)
    x = torch.randn(3, 40, 4, dtype=torch.float64)
    full = torch.ones(3, 40, dtype=torch.bool)
    models = [create_model(arch).double().train() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    plain = models[0](x)
    masked = models[1](torch.cat([x, x.new_zeros(3, 1, 4)], 1), torch.cat([full, ~full[:, :1]], 1))
    assert torch.allclose(plain, masked[:, :40], atol=1e-10)
    plain.square().sum().backward()
    masked.square().sum().backward()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-8, atol=1e-10), name
    for (name, a), b in zip(models[0].named_buffers(), models[1].buffers(), strict=True):
        assert torch.allclose(a.double(), b.double(), atol=1e-10), name


def test_n3_layer_analytic_backward_matches_autograd() -> None:
    # The N3 layer differentiates its rounds by hand; the autograd path is the reference.
    torch.manual_seed(1)
    models = [create_model("cnnet-n3").double().train() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    assert models[0].n3.knn.backward == "analytic"
    models[1].n3.knn.backward = "autograd"
    xs, mask = _padded(_pairs([30, 21]))
    outs = [m(xs.double(), mask) for m in models]
    assert torch.equal(outs[0], outs[1])
    for out in outs:
        out.square().sum().backward()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-9, msg=name)


def test_masked_batch_norm_full_mask_matches_none() -> None:
    x = torch.randn(2, 10, 3) * 3 + 1
    bns = [MaskedBatchNorm(3), MaskedBatchNorm(3)]
    out_none, out_mask = bns[0](x), bns[1](x, torch.ones(2, 10, dtype=torch.bool))
    assert torch.allclose(out_none, out_mask, atol=1e-5)
    assert torch.allclose(bns[0].running_var, bns[1].running_var, atol=1e-6)
    assert torch.allclose(bns[0].running_mean, bns[1].running_mean, atol=1e-6)
    assert int(bns[0].num_batches_tracked) == int(bns[1].num_batches_tracked) == 1
    bns[0].eval(), bns[1].eval()
    assert torch.allclose(bns[0](x), bns[1](x, torch.ones(2, 10, dtype=torch.bool)), atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 37])
def test_context_norm_backward_matches_the_formula(n: int) -> None:
    # The hand-written backward against autograd on the formula; gradcheck in float64.
    torch.manual_seed(n)
    x = (torch.randn(3, n, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    g = torch.randn(3, n, 5, dtype=torch.float64)
    y = context_norm(x)
    torch.testing.assert_close(y, context_norm_reference(x), rtol=1e-12, atol=1e-12)
    (got,) = torch.autograd.grad(y, x, g)
    (expected,) = torch.autograd.grad(context_norm_reference(x), x, g)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: context_norm(t, eps=0.1), (x[:, :, :2],))
    x32 = x.detach().float().requires_grad_()
    (got32,) = torch.autograd.grad(context_norm(x32), x32, g.float())
    torch.testing.assert_close(got32, expected.float(), rtol=1e-4, atol=1e-5)


def test_context_norm_with_mask_equals_each_pair_alone() -> None:
    x = torch.randn(2, 8, 5)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    out = context_norm(x, mask)
    assert torch.allclose(out[0, :5], context_norm(x[:1, :5])[0], atol=1e-6)
    assert torch.allclose(out[1], context_norm(x[1:])[0], atol=1e-6)
    assert out[0, 5:].eq(0).all()


def test_n3_layer_neighbours_exclude_self_and_padding() -> None:
    torch.manual_seed(0)
    layer = SetN3Layer(4, k=2, features=8, embed_channels=3)
    x = torch.randn(1, 6, 4)
    mask = torch.tensor([[True, True, True, True, False, False]])
    out = layer(x, mask)
    assert out.shape == (1, 6, 12) and out[0, 4:].eq(0).all()
    x2 = x.clone()
    x2[0, 4:] = 50.0
    assert torch.allclose(layer(x2, mask), out)  # padding never becomes a neighbour
    assert torch.allclose(out[:, :4], layer(x[:, :4])[:, :4], atol=1e-6)


@pytest.mark.parametrize("arch", ["cnnet", "cnnet-n3"])
def test_backward_reaches_every_parameter(arch: str) -> None:
    model = _tiny(arch)
    xs, mask = _padded(_pairs([12, 9]))
    logits = model(xs, mask)
    assert logits.shape == (2, 12) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_input_checks() -> None:
    model = CNNet(**{k: v for k, v in TINY.items() if k == "channels"}, depth=2)
    with pytest.raises(ValueError, match=r"xs must be \(B, N, 4\), got \(2, 5\)"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(torch.zeros(2, 5, 4), torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"n3_block must be in \[1, depth\)"):
        CNNet(depth=4, n3_block=4)
    with pytest.raises(ValueError, match="channels must be divisible by k"):
        CNNet(channels=18, n3_block=2, k=3)
    with pytest.raises(ValueError, match="init must be"):
        CNNet(init="xavier")


def test_model_file_round_trip(tmp_path: Path) -> None:
    model = _tiny("cnnet-n3")
    with torch.no_grad():
        model(torch.randn(1, 16, 4))  # move the running statistics
    path = save_model(model, tmp_path / "m.safetensors", {"task": "correspondences"})
    loaded = load_model(path)
    assert loaded.arch == "cnnet-n3" and loaded.n3_block == 2
    xs = torch.randn(1, 16, 4)
    with torch.no_grad():
        assert torch.equal(loaded(xs), model.eval()(xs))


def test_exp_temperature_is_positive_and_starts_near_its_scale() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 9, 4)
    linear = SetN3Layer(4, k=2, features=8, embed_channels=3)
    exp = SetN3Layer(
        4, k=2, features=8, embed_channels=3, temperature="exp", temperature_scale=50.0
    )
    exp.load_state_dict(linear.state_dict())  # the same parameters, another parametrisation
    t = exp.inverse_temperature(x)
    assert torch.allclose(t, 50.0 * linear.inverse_temperature(x).exp())
    with torch.no_grad():  # a strongly negative f_T stays positive
        exp.temperature[-1].linear2.bias.fill_(-30.0)
        exp.temperature[-1].shortcut.bias.fill_(-30.0)
    assert (exp.inverse_temperature(x) > 0).all()
    with pytest.raises(ValueError, match="temperature must be 'linear' or 'exp'"):
        SetN3Layer(4, temperature="softplus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature_scale must be finite and > 0"):
        SetN3Layer(4, temperature="exp", temperature_scale=0.0)


def test_a_selective_exp_temperature_picks_near_neighbours(tmp_path: Path) -> None:
    """A large scale makes the first round's weight peak on each match's nearest embedding."""
    torch.manual_seed(2)
    model = create_model(
        "cnnet-n3", **TINY, n3_block=2, temperature="exp", temperature_scale=1e6
    ).eval()
    layer, x = model.n3, torch.randn(1, 12, 4)
    e = layer.embedding(x)[0]
    d = torch.cdist(e, e).fill_diagonal_(float("inf"))
    volumes = layer(x)[0, :, 4:8]  # the first neighbour volume
    assert torch.allclose(volumes, x[0, d.argmin(1)], atol=1e-4)
    path = save_model(model, tmp_path / "m.safetensors", {"task": "correspondences"})
    loaded = load_model(path)
    assert loaded.n3.temperature_mode == "exp" and loaded.n3.temperature_scale == 1e6
    xs = torch.randn(1, 16, 4)
    with torch.no_grad():
        assert torch.equal(loaded(xs), model(xs))
