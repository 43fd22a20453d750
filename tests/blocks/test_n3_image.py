"""Tests for n3net.blocks.n3_image: the image N3 block, its temperature and logits batch norm."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from n3net.blocks.n3_image import LogitsBatchNorm, N3Block2d, patch_temperature
from n3net.knn import neural_knn
from n3net.ops.patches import pad_for_patches, patch_padding
from n3net.ops.windows import window_aggregate_reference

# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_has_c_times_k_plus_1_channels(batch: int, channels: int, device) -> None:
    block = N3Block2d(channels, k=3, search_window=5, embed_features=8).to(device)
    x = torch.randn(batch, channels, 33, 41, device=device)
    out = block(x)
    assert out.shape == (batch, channels * 4, 33, 41)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, :channels], x)  # Y comes first


def test_default_block_on_odd_size() -> None:
    block = N3Block2d(8).eval()  # k = 7, 10 px patches at stride 5, 15 x 15 window
    with torch.no_grad():
        out = block(torch.randn(1, 8, 83, 91))
    assert out.shape == (1, 64, 83, 91) and torch.isfinite(out).all()


@pytest.mark.parametrize(("height", "width"), [(20, 20), (11, 40), (76, 30)])
def test_small_images_use_what_exists(height: int, width: int) -> None:
    # 20 x 20 px is a 3 x 3 grid (8 candidates), 11 x 40 a 2 x 7 grid: smaller than the window.
    block = N3Block2d(2, k=7, embed_features=8).eval()
    with torch.no_grad():
        assert block(torch.randn(2, 2, height, width)).shape == (2, 16, height, width)


# --- output forms and aggregated values -----------------------------------------------------


def test_residual_is_concat_minus_y() -> None:
    concat = N3Block2d(3, k=2, search_window=5, embed_features=8, output="concat").eval()
    residual = N3Block2d(3, k=2, search_window=5, embed_features=8, output="residual").eval()
    residual.load_state_dict(concat.state_dict())
    x = torch.randn(2, 3, 30, 27)
    with torch.no_grad():
        c, r = concat(x), residual(x)
    assert torch.equal(c[:, :3], x) and torch.equal(r[:, :3], x)
    # [Y, N_1 - Y, N_2 - Y]: N_j - Y occupies channels 3j .. 3j + 2.
    torch.testing.assert_close(r[:, 3:], c[:, 3:] - x.repeat(1, 2, 1, 1))


@pytest.mark.parametrize("output", ["residual", "concat"])
def test_inference_forward_equals_autograd_forward(output: str) -> None:
    block = N3Block2d(2, k=3, search_window=5, embed_features=8, output=output).eval()
    x = torch.randn(2, 2, 30, 33)
    with torch.no_grad():
        inference = block(x)
    torch.testing.assert_close(inference, block(x).detach(), atol=0, rtol=0)


@pytest.mark.parametrize("train", [False, True])
def test_small_cnns_run_channels_last_on_the_cpu_with_the_same_result(
    train: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedding / temperature CNNs run channels-last on a contiguous CPU input (a speed-up
    only): output and gradients match running them as given (float64: 1e-10), and the output
    keeps the input's layout. A custom embedding module is called as given."""
    torch.manual_seed(0)
    block = N3Block2d(3, k=2, search_window=5, embed_features=8).double().train(train)
    x = torch.randn(2, 3, 27, 31, dtype=torch.float64, requires_grad=True)
    seen: list[bool] = []
    embed = block.embedding.forward

    def spy(inp: Tensor) -> Tensor:
        seen.append(inp.is_contiguous(memory_format=torch.channels_last))
        return embed(inp)

    monkeypatch.setattr(block.embedding, "forward", spy)
    state = copy.deepcopy(block.state_dict())
    out = block(x)
    assert seen == [True] and out.is_contiguous()
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    block.load_state_dict(state)  # the same running statistics for the second pass
    with monkeypatch.context() as m:
        m.setattr(
            N3Block2d,
            "_small_cnns",
            lambda self, inp: (self.embedding(inp), self.temperature_net(inp)),
        )
        plain = block(x)
        (plain_grad,) = torch.autograd.grad(plain.square().sum(), x)
    assert seen == [True, False]
    torch.testing.assert_close(out, plain, atol=1e-10, rtol=0)
    torch.testing.assert_close(grad, plain_grad, atol=1e-10, rtol=0)
    # A custom embedding module sees the input as given.
    custom = N3Block2d(3, k=2, search_window=5, embedding=nn.Conv2d(3, 4, 1)).double()
    inputs: list[bool] = []
    custom.embedding.register_forward_pre_hook(
        lambda mod, args: inputs.append(args[0].is_contiguous())
    )
    custom(x.detach())
    assert inputs == [True]


def test_values_are_aggregated_with_weights_from_x() -> None:
    block = N3Block2d(3, k=2, search_window=5, embed_features=8).double().eval()
    x = torch.randn(2, 3, 25, 31, dtype=torch.float64)
    v1, v2 = torch.randn(2, 2, 2, 25, 31, dtype=torch.float64)
    with torch.no_grad():
        out = block(x, values=v1)
        assert out.shape == (2, 2 * 3, 25, 31)  # channels follow the values
        assert torch.equal(out[:, :2], v1)
        # The weights depend on x only, so the volumes are linear in the values.
        n1, n2 = block.neighbours(x, v1), block.neighbours(x, v2)
        torch.testing.assert_close(block.neighbours(x, 2 * v1 - v2), 2 * n1 - n2)
        torch.testing.assert_close(block.neighbours(x, x), block.neighbours(x))
        assert not torch.allclose(block.neighbours(x + 1, v1), n1)  # x does matter


def test_block_equals_functional() -> None:
    # Identity embedding, fixed temperature, no batch norm: the block is window_aggregate on the
    # padded input, cropped back.
    block = N3Block2d(
        2,
        k=3,
        search_window=5,
        embedding=nn.Identity(),
        learn_temperature=False,
        temperature=0.7,
        logits_batchnorm=False,
        output="concat",
        impl="fast",
    )
    x = 0.1 * torch.randn(1, 2, 23, 29, dtype=torch.float64)
    padded = pad_for_patches(x, 10, 5)
    n1, n2 = (padded.shape[-2] - 10) // 5 + 1, (padded.shape[-1] - 10) // 5 + 1
    expected = window_aggregate_reference(
        padded,
        padded,
        3,
        lambda logits, t, mask: neural_knn(logits, 3, t, mask),
        patch_size=10,
        stride=5,
        search_window=5,
        temperature=torch.full((1, n1, n2), 0.7, dtype=torch.float64),
    )
    top, left = patch_padding(23, 10, 5)[0], patch_padding(29, 10, 5)[0]
    expected = expected[..., top : top + 23, left : left + 29].flatten(1, 2)
    torch.testing.assert_close(block(x)[:, 2:], expected, atol=1e-10, rtol=0)


# --- temperature ----------------------------------------------------------------------------


def test_patch_temperature_hand_values() -> None:
    # A 20 x 20 map v[r, c] = 20 r + c; 10 px patches at stride 5: a 3 x 3 grid.
    log_t = torch.arange(400.0, dtype=torch.float64).reshape(1, 1, 20, 20)
    mean = patch_temperature(log_t, 10, 5, "mean")
    # Mean over rows 5i..5i+9 and columns 5j..5j+9: 20 (5i + 4.5) + 5j + 4.5.
    expected = torch.tensor(
        [[20 * (5 * i + 4.5) + 5 * j + 4.5 for j in range(3)] for i in range(3)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(mean, expected[None])
    # Flat index 50 is patch row 5, column 0: v[5i + 5, 5j].
    at50 = patch_temperature(log_t, 10, 5, 50)
    assert at50[0].tolist() == [[20 * (5 * i + 5) + 5 * j for j in range(3)] for i in range(3)]
    assert patch_temperature(log_t, 10, 5, 0)[0, 1, 2] == 20 * 5 + 10
    assert patch_temperature(log_t, 10, 5, 99)[0, 2, 2] == 20 * 19 + 19


def test_patch_temperature_mean_counts_padding_zeros() -> None:
    # An 8 x 8 map of ones, zero-padded to 10 x 10: the mean is 64 / 100, not 1.
    ones = pad_for_patches(torch.ones(1, 1, 8, 8), 10, 5)
    assert patch_temperature(ones, 10, 5).item() == pytest.approx(0.64)


@pytest.mark.parametrize("at", [100, -1, "center", 2.0])
def test_patch_temperature_bad_index(at) -> None:
    with pytest.raises(ValueError, match="temperature_at"):
        patch_temperature(torch.zeros(1, 1, 20, 20), 10, 5, at)


def test_temperature_at_changes_the_output() -> None:
    x = torch.randn(1, 2, 30, 30)
    mean = N3Block2d(2, k=2, search_window=5, embed_features=8).eval()
    pixel = N3Block2d(2, k=2, search_window=5, embed_features=8, temperature_at=50).eval()
    pixel.load_state_dict(mean.state_dict())
    with torch.no_grad():
        assert not torch.allclose(mean(x), pixel(x))


def test_fixed_temperature() -> None:
    kwargs = dict(k=2, search_window=5, embed_features=8, learn_temperature=False)
    default = N3Block2d(2, **kwargs).eval()
    assert default.temperature_net is None
    assert not any(k.startswith("temperature_net") for k in default.state_dict())
    hot = N3Block2d(2, **kwargs, temperature=3.0).eval()
    hot.load_state_dict(default.state_dict())
    x = torch.randn(1, 2, 30, 30)
    with torch.no_grad():
        assert not torch.allclose(default(x), hot(x))
        # A temperature network predicting log(1 / 0.1) everywhere is the fixed temperature 1.
        learned = N3Block2d(2, k=2, search_window=5, embed_features=8).eval()
        learned.load_state_dict(default.state_dict(), strict=False)
        last = learned.temperature_net[-1]
        last.weight.zero_()
        last.bias.fill_(math.log(10.0))
        torch.testing.assert_close(learned(x), default(x), atol=1e-5, rtol=0)


def test_every_parameter_gets_a_finite_gradient() -> None:
    # Learned temperature with the fast path's masks: no NaN reaches the temperature network.
    block = N3Block2d(2, k=3, search_window=5, embed_features=8)
    block(torch.randn(2, 2, 33, 37)).square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if not name.startswith("logits_bn.bias"):  # a shift of all logits: softmax ignores it
            assert p.grad.abs().sum() > 0, name


# --- reference against fast, whole block ----------------------------------------------------


def _momentum_one(block: nn.Module) -> None:
    """Make every batch norm's running statistics equal the last batch's."""
    for m in block.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    ("kwargs", "tol"),
    [(dict(), 1e-9), (dict(temperature_scale=1.0, search_window=5, embed_features=16), 1e-10)],
    ids=["authors-config", "scale1-window5"],
)
def test_reference_equals_fast(kwargs: dict, tol: float, train: bool) -> None:
    """The whole block in float64: output, every gradient and the running statistics.

    Tolerance: ``tol`` times max(1, largest magnitude of the reference tensor). With the authors'
    temperature scale 0.1 the random temperature net gives weights up to 0.99994, where the
    relaxation amplifies rounding ~1e3-fold (see tests/ops/test_windows.py), hence 1e-9 there.
    """
    x = torch.randn(2, 8, 43, 47, dtype=torch.float64)
    block = N3Block2d(8, k=7, **kwargs).double()
    if not train:
        # Running statistics of this input, so eval-mode logits are O(1) like in training.
        _momentum_one(block)
        with torch.no_grad():
            block(x)
        block.eval()
    results = {}
    for impl in ("reference", "fast"):
        b = copy.deepcopy(block)
        b.impl = impl
        xi = x.clone().requires_grad_()
        out = b(xi)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).double())
        tensors = {"output": out.detach(), "grad x": xi.grad}
        tensors |= {f"grad {n}": p.grad for n, p in b.named_parameters()}
        tensors |= {n: s for n, s in b.state_dict().items() if "running" in n}
        results[impl] = tensors
    for name, want in results["reference"].items():
        atol = tol * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(
            results["fast"][name], want, atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
        )


# --- logits batch norm ----------------------------------------------------------------------


def test_logits_batchnorm_uses_valid_pairs_only() -> None:
    bn = LogitsBatchNorm()
    logits = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -100.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, False]])
    out = bn(logits, mask)
    valid = torch.arange(1.0, 7.0)
    expected = (valid - valid.mean()) / torch.sqrt(valid.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(out[mask], expected)
    assert out[0, 3] == 100 and out[1, 3] == -100  # masked pairs unchanged
    torch.testing.assert_close(bn.running_mean, 0.1 * valid.mean()[None])
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * valid.var(unbiased=True)[None])
    bn.eval()
    torch.testing.assert_close(
        bn(logits), (logits - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5)
    )
    with pytest.raises(ValueError, match="2 valid"):
        LogitsBatchNorm()(torch.ones(1, 1))


# --- state dict -----------------------------------------------------------------------------


def test_state_dict_keys() -> None:
    keys = set(N3Block2d(8).state_dict())
    for key in (
        "embedding.0.weight",
        "embedding.1.running_mean",
        "embedding.6.bias",
        "temperature_net.6.weight",
        "logits_bn.running_var",
    ):
        assert key in keys
    assert "embedding.0.bias" not in keys
    plain = N3Block2d(8, learn_temperature=False, logits_batchnorm=False)
    assert not any(k.startswith(("temperature_net", "logits_bn")) for k in plain.state_dict())
    assert "k=7" in repr(plain) and "search_window=15" in repr(plain)


# --- exceptions -----------------------------------------------------------------------------


def _call(block: N3Block2d, x: Tensor, values: Tensor | None = None) -> Tensor:
    with torch.no_grad():
        return block.eval()(x, values)


def test_exceptions_input() -> None:
    block = N3Block2d(3, k=7, embed_features=8)
    with pytest.raises(ValueError, match=r"x must be \(B, 3, H, W\)"):
        _call(block, torch.randn(1, 2, 30, 30))  # wrong in_channels
    with pytest.raises(ValueError, match="x must be"):
        _call(block, torch.randn(3, 30, 30))
    with pytest.raises(ValueError, match="values"):
        _call(block, torch.randn(1, 3, 30, 30), torch.randn(1, 3, 30, 31))
    with pytest.raises(ValueError, match="temperature must not be NaN"):
        _call(block, torch.full((1, 3, 30, 30), math.nan))


@pytest.mark.parametrize(
    ("size", "k", "match"),
    [(8, 7, r"k=7 > 0 .*10x10 padded image has a 1x1 patch grid"), (20, 9, r"k=9 > 8 .*3x3")],
    ids=["8px-no-candidate", "20px-8-candidates"],
)
@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_exceptions_image_too_small_for_k(size: int, k: int, match: str, impl: str) -> None:
    block = N3Block2d(1, k=k, embed_features=8, impl=impl)
    with pytest.raises(ValueError, match=match):
        _call(block, torch.randn(1, 1, size, size))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(stride=11), "stride"),
        (dict(k=0), "k"),
        (dict(in_channels=0), "in_channels"),
        (dict(search_window=0), "search_window"),
        (dict(output="sum"), "output"),
        (dict(learn_temperature=False, temperature=math.nan), "temperature"),
        (dict(learn_temperature=False, temperature=0.0), "temperature"),
        (dict(rule="soft"), "rule"),
    ],
    ids=["stride>patch", "k0", "channels0", "window0", "output", "nan-temp", "zero-temp", "rule"],
)
def test_exceptions_constructor(kwargs: dict, match: str) -> None:
    kwargs = {"in_channels": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        N3Block2d(**kwargs)


def test_chunks_of_tile_rows_do_not_change_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path groups rows of tiles by a per-device budget (accelerators: several rows per
    # chunk). One row per chunk and all rows at once must give the same output and gradients.
    from n3net.ops import _tiling, windows

    torch.manual_seed(0)
    block = N3Block2d(2, k=3, patch_size=4, stride=2, search_window=5).train().double()
    x = torch.randn(2, 2, 37, 41, dtype=torch.float64)
    chosen: list[int] = []
    rule = windows._rows_per_chunk

    def spy(*args: object) -> int:
        chosen.append(rule(*args))  # type: ignore[arg-type]
        return chosen[-1]

    monkeypatch.setattr(windows, "_rows_per_chunk", spy)

    def run(budget: int) -> tuple[Tensor, list[Tensor]]:
        monkeypatch.setattr(_tiling, "_CHUNK_ELEMENTS", {"cpu": budget})
        xi = x.clone().requires_grad_()
        net = copy.deepcopy(block)
        out = net(xi)
        grads = torch.autograd.grad(out.square().sum(), [xi, *net.parameters()])
        return out.detach(), list(grads)

    out1, grads1 = run(1)
    out2, grads2 = run(1 << 30)
    assert chosen[:2] == [1, 5]  # an 18 x 20 patch grid: 5 rows of 4 x 4 tiles
    torch.testing.assert_close(out2, out1, rtol=0, atol=1e-12)
    for g2, g1 in zip(grads2, grads1, strict=True):
        torch.testing.assert_close(g2, g1, rtol=0, atol=1e-10)
