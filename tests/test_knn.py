"""Tests for n3net.knn: the continuous KNN relaxation (paper Eqs. 8-11) and its baselines."""

from __future__ import annotations

import decimal
import math

import pytest
import torch
from torch import Tensor

from n3net.knn import NeuralKNN, concrete_knn, hard_knn, log1mexp, neural_knn, stochastic_knn

RULES = ["continuous", "hard", "stochastic", "concrete"]


def _rule(name: str, logits: Tensor, k: int, temperature=None, mask=None, seed: int = 0) -> Tensor:
    """Call one selection rule by name; stochastic rules get a freshly seeded generator."""
    generator = torch.Generator(device=logits.device).manual_seed(seed)
    if name == "continuous":
        return neural_knn(logits, k, temperature, mask)
    if name == "hard":
        return hard_knn(logits, k, mask)
    if name == "stochastic":
        return stochastic_knn(logits, k, temperature, mask, generator=generator)
    return concrete_knn(logits, k, temperature, mask, generator=generator)


def _mask_with_at_least(shape: tuple[int, ...], k: int, device) -> Tensor:
    """A random bool mask of candidates with at least ``k`` valid entries in every row."""
    mask = torch.rand(shape, device=device) > 0.4
    mask[..., :k] = True
    return mask[..., torch.randperm(shape[-1], device=device)]


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    "leading", [(0,), (1,), (3,), (2, 3, 4), ()], ids=["batch0", "batch1", "batch3", "3d", "none"]
)
def test_shapes(rule: str, leading: tuple[int, ...], device) -> None:
    logits = torch.randn(*leading, 6, device=device)
    weights = _rule(rule, logits, 3)
    assert weights.shape == (*leading, 3, 6)
    assert weights.device == logits.device and weights.dtype == logits.dtype


def test_per_query_temperature_broadcasts(device) -> None:
    logits = torch.randn(2, 3, 4, 6, device=device)
    temperature = torch.rand(2, 3, 4, 1, device=device) + 0.5
    assert neural_knn(logits, 2, temperature).shape == (2, 3, 4, 2, 6)
    # Row (b, n) uses its own temperature.
    one = neural_knn(logits[1, 2, 3], 2, temperature[1, 2, 3])
    torch.testing.assert_close(neural_knn(logits, 2, temperature)[1, 2, 3], one)


# --- properties from the paper --------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
def test_weights_nonnegative_rows_sum_to_one(rule: str, device, dtype) -> None:
    logits = 3 * torch.randn(4, 5, 9, device=device, dtype=dtype)
    temperature = torch.rand(4, 5, 1, device=device, dtype=dtype) + 0.3
    weights = _rule(rule, logits, 4, temperature)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights[..., 0]))


@pytest.mark.parametrize("rule", RULES)
def test_masked_candidates_get_exactly_zero_weight(rule: str, device) -> None:
    logits = 5 * torch.randn(7, 10, device=device)
    mask = _mask_with_at_least((7, 10), 3, device)
    logits[~mask] = 100.0  # masked candidates are the most similar: still never chosen
    weights = _rule(rule, logits, 3, 0.7, mask)
    assert (weights.masked_select(~mask[:, None, :].expand_as(weights)) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, 3, device=device))


def test_broadcast_mask(device) -> None:
    logits = torch.randn(4, 6, device=device)
    mask = torch.tensor([True, False, True, True, False, True], device=device)
    weights = neural_knn(logits, 3, mask=mask)
    assert (weights[..., ~mask] == 0).all()
    torch.testing.assert_close(weights, neural_knn(logits, 3, mask=mask.expand(4, 6)))


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_small_temperature_gives_hard_knn(mode: str, device, dtype) -> None:
    # Logits at least 0.1 apart; t = 1e-6 saturates every softmax to one-hot rows.
    logits = 0.1 * torch.randperm(12, device=device).to(dtype).reshape(3, 4)
    logits = logits + 0.01 * torch.rand(3, 4, device=device, dtype=dtype)
    weights = neural_knn(logits, 3, torch.tensor(1e-6, dtype=dtype, device=device), mode=mode)
    torch.testing.assert_close(weights, hard_knn(logits, 3), atol=1e-6, rtol=0)


def test_paper_mode_reaches_hard_knn_before_saturation() -> None:
    # Gaps of 1 at t = 0.05: the round-1 winner still has 1 - w = 2e-9 (nothing rounds), and the
    # literal form (the whole logit divided by t every round) is hard KNN to 1e-6.
    logits = torch.tensor([0.0, -1.0, -2.0, -3.0], dtype=torch.float64)
    t = torch.tensor(0.05, dtype=torch.float64)
    torch.testing.assert_close(
        neural_knn(logits, 3, t, mode="paper"), hard_knn(logits, 3), atol=1e-6, rtol=0
    )


def test_code_mode_splits_round_two_before_saturation() -> None:
    # The authors' form scales the logits once, a = logits / t, then a_top + log(1 - w_top)
    # ~= log(sum of the others' e^a) ~= a_second: round 2 ties the round-1 winner with the
    # runner-up (weights ~1/2 each) however small t is, until w_top rounds to exactly 1 and
    # log(1 - w_top) becomes -inf. Its t -> 0 agreement with hard KNN comes from that rounding.
    logits = torch.tensor([0.0, -1.0, -2.0, -3.0], dtype=torch.float64)
    weights = neural_knn(logits, 2, torch.tensor(0.05, dtype=torch.float64), mode="code")
    a = [v / 0.05 for v in (0.0, -1.0, -2.0, -3.0)]
    z = sum(math.exp(v) for v in a)
    # 1 - w_i = (sum of the other e^a) / z, summed directly to avoid cancellation.
    a2 = [v + math.log((z - math.exp(v) if v < 0 else sum(map(math.exp, a[1:]))) / z) for v in a]
    z2 = sum(math.exp(v) for v in a2)
    expected = torch.tensor([math.exp(v) / z2 for v in a2], dtype=torch.float64)
    # log_softmax gives log w_top = -log(1 + 2e-9) with the rounding of 1 + 2e-9 (relative error
    # ~5e-8 in 1 - w_top), which log1mexp cannot undo: hence 1e-7, not 1e-12.
    torch.testing.assert_close(weights[1], expected, atol=1e-7, rtol=0)
    assert abs(weights[1, 0].item() - 0.5) < 1e-6 and abs(weights[1, 1].item() - 0.5) < 1e-6


def test_k1_is_softmax_attention(device, dtype) -> None:
    logits = torch.randn(5, 8, device=device, dtype=dtype)
    temperature = torch.rand(5, 1, device=device, dtype=dtype) + 0.2
    for mode in ("code", "paper"):
        weights = neural_knn(logits, 1, temperature, mode=mode)
        torch.testing.assert_close(weights[:, 0], torch.softmax(logits / temperature, -1))


def test_modes_agree_at_t1_and_differ_otherwise(device) -> None:
    logits = 2 * torch.randn(6, 9, device=device, dtype=torch.float64)
    one = torch.ones(6, 1, device=device, dtype=torch.float64)
    code = neural_knn(logits, 4, one, mode="code")
    torch.testing.assert_close(code, neural_knn(logits, 4, one, mode="paper"), atol=1e-14, rtol=0)
    torch.testing.assert_close(code, neural_knn(logits, 4), atol=1e-14, rtol=0)
    two = 2 * one
    code2, paper2 = (
        neural_knn(logits, 4, two, mode="code"),
        neural_knn(logits, 4, two, mode="paper"),
    )
    torch.testing.assert_close(code2[..., 0, :], paper2[..., 0, :])  # round 1 is the same softmax
    assert (code2[..., 1:, :] - paper2[..., 1:, :]).abs().max() > 1e-3


def test_hand_computed_three_candidates_k2() -> None:
    # e^logits = (1, 2, 3): w1 = (1, 2, 3) / 6;
    # e^(a + log(1 - w1)) = (1 * 5/6, 2 * 4/6, 3 * 3/6) = (5, 8, 9) / 6: w2 = (5, 8, 9) / 22.
    logits = torch.tensor([0.0, math.log(2), math.log(3)], dtype=torch.float64)
    expected = torch.tensor([[1 / 6, 2 / 6, 3 / 6], [5 / 22, 8 / 22, 9 / 22]], dtype=torch.float64)
    torch.testing.assert_close(neural_knn(logits, 2), expected, atol=1e-15, rtol=0)
    # t = 2 in code mode: a = logits / 2, e^a = (1, r2, r3), s = 1 + r2 + r3;
    # round 2 uses e^a * (1 - e^a / s).
    r2, r3 = math.sqrt(2), math.sqrt(3)
    s = 1 + r2 + r3
    w1 = [1 / s, r2 / s, r3 / s]
    u = [1 * (1 - w1[0]), r2 * (1 - w1[1]), r3 * (1 - w1[2])]
    code = torch.tensor([w1, [v / sum(u) for v in u]], dtype=torch.float64)
    t = torch.tensor(2.0, dtype=torch.float64)
    torch.testing.assert_close(neural_knn(logits, 2, t), code, atol=1e-15, rtol=0)
    # Paper mode: round 2 is softmax((logits + log(1 - w1)) / 2): (e^logits (1 - w1))^(1/2).
    v = [math.sqrt(e * (1 - w)) for e, w in zip((1, 2, 3), w1, strict=True)]
    paper = torch.tensor([w1, [x / sum(v) for x in v]], dtype=torch.float64)
    torch.testing.assert_close(neural_knn(logits, 2, t, mode="paper"), paper, atol=1e-15, rtol=0)


def test_hard_knn_picks_descending_order(device) -> None:
    logits = torch.tensor([[0.3, 2.0, -1.0, 1.5, 0.9]], device=device)
    weights = hard_knn(logits, 3)
    assert weights.argmax(-1).tolist() == [[1, 3, 4]]
    mask = torch.tensor([True, False, True, True, True], device=device)
    assert hard_knn(logits, 3, mask).argmax(-1).tolist() == [[3, 4, 0]]


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_gradcheck(mode: str) -> None:
    logits = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    temperature = (torch.rand(2, 2, 1, dtype=torch.float64) + 0.5).requires_grad_()
    mask = _mask_with_at_least((2, 2, 5), 3, "cpu")
    assert not mask.all()
    assert torch.autograd.gradcheck(
        lambda lg, t: neural_knn(lg, 3, t, mask, mode=mode), (logits, temperature)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("gap", [20.0, 1000.0], ids=["w-near-1", "w-exactly-1"])
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_finite_gradients_when_a_weight_is_one(mode: str, gap: float, dtype: torch.dtype) -> None:
    # With gap 1000 every round's winner has w == 1 and log(1 - w) = -inf: the logit that is then
    # -inf must not send 0 * inf = NaN into the temperature's gradient (paper mode divides it).
    logits = (-gap * torch.arange(6, dtype=dtype)).requires_grad_()
    temperature = torch.tensor(0.9, dtype=dtype, requires_grad=True)
    weights = neural_knn(logits, 4, temperature, mode=mode)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, dtype=dtype))
    (weights * torch.randn(4, 6, dtype=dtype)).sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(temperature.grad).all()


@pytest.mark.parametrize("rule", ["continuous", "concrete"])
def test_masked_temperature_gradient_is_finite(rule: str, device) -> None:
    # Masked logits are -inf; dividing them by t would give d/dt = 0 * inf = NaN.
    logits = torch.randn(4, 6, device=device, requires_grad=True)
    temperature = torch.full((4, 1), 0.5, device=device, requires_grad=True)
    mask = _mask_with_at_least((4, 6), 2, device)
    assert not mask.all()
    (
        _rule(rule, logits, 2, temperature, mask) * torch.randn(4, 2, 6, device=device)
    ).sum().backward()
    assert torch.isfinite(temperature.grad).all() and torch.isfinite(logits.grad).all()
    assert (logits.grad[~mask] == 0).all()


def test_concrete_is_differentiable() -> None:
    logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    temperature = (torch.rand(3, 1, dtype=torch.float64) + 0.5).requires_grad_()

    def fn(lg: Tensor, t: Tensor) -> Tensor:
        return concrete_knn(lg, 2, t, generator=torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(fn, (logits, temperature))


# --- log1mexp -------------------------------------------------------------------------------


def _log1mexp_exact(a: float) -> float:
    """log(1 - e^a) in decimal arithmetic with 40 digits to spare (independent of the formula)."""
    if a == -math.inf:
        return 0.0
    if a == 0.0:
        return -math.inf
    with decimal.localcontext() as ctx:
        ctx.prec = 40 + int(-a / math.log(10))  # 1 - e^a keeps e^a's digits even at a = -700
        return float((1 - decimal.Decimal(a).exp()).ln())


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float32, 2e-7), (torch.float64, 1e-15)], ids=["float32", "float64"]
)
def test_log1mexp_accuracy(dtype: torch.dtype, rtol: float) -> None:
    points = [-1e-20, -1e-10, -1e-5, -0.01, -0.5, -math.log(2), -0.7, -1.0, -5.0, -20.0, -40.0]
    points += [-700.0 if dtype == torch.float64 else -80.0, -math.inf, 0.0]
    a = torch.tensor(points, dtype=dtype)
    got = log1mexp(a)
    exact = torch.tensor([_log1mexp_exact(v) for v in a.double().tolist()], dtype=torch.float64)
    finite = torch.isfinite(exact)
    assert got[~finite].tolist() == [-math.inf]  # only a = 0
    assert got[-2].item() == 0.0  # a = -inf (a masked candidate) leaves the logit unchanged
    rel = ((got.double() - exact) / exact.abs().clamp_min(1e-300))[finite]
    assert rel.abs().max() <= rtol, rel


def test_log1mexp_backward() -> None:
    a = torch.tensor([0.0, -1e-12, -0.3, -3.0, -math.inf], dtype=torch.float64, requires_grad=True)
    log1mexp(a).sum().backward()
    assert torch.isfinite(a.grad).all()
    assert a.grad[-1] == 0  # masked candidates get no gradient
    x = a.detach()[2:4]
    torch.testing.assert_close(a.grad[2:4], -x.exp() / (1 - x.exp()), rtol=1e-6, atol=0)


# --- stochastic rule ------------------------------------------------------------------------


def test_stochastic_first_draw_follows_softmax(device) -> None:
    logits = torch.tensor([0.5, -0.2, 1.0, 0.0, -1.5], device=device)
    generator = torch.Generator(device=device).manual_seed(1)
    draws = stochastic_knn(logits.expand(20000, 5), 3, 0.8, generator=generator)
    freq = draws[:, 0].mean(0)
    # 20000 draws: standard error <= 0.0036 per probability; 0.02 is > 5 standard errors.
    torch.testing.assert_close(freq, torch.softmax(logits / 0.8, -1), atol=0.02, rtol=0)
    # Second draw given first = index 2 (the favourite): softmax over the rest (Eq. 5).
    first2 = draws[:, 0, 2] == 1
    cond = draws[first2, 1].mean(0)
    rest = torch.softmax((logits / 0.8).masked_fill(torch.arange(5, device=device) == 2, -1e9), -1)
    torch.testing.assert_close(cond, rest, atol=0.03, rtol=0)


def test_stochastic_no_repeats_and_respects_mask(device) -> None:
    logits = torch.randn(500, 8, device=device)
    mask = _mask_with_at_least((500, 8), 4, device)
    draws = stochastic_knn(logits, 4, 2.0, mask, generator=torch.Generator(device).manual_seed(0))
    assert ((draws == 0) | (draws == 1)).all() and (draws.sum(-1) == 1).all()
    assert draws.sum(-2).max() == 1  # no candidate drawn twice within k rounds
    assert (draws.sum(-2)[~mask] == 0).all()


def test_stochastic_is_reproducible_with_generator() -> None:
    logits = torch.randn(10, 7)
    a = stochastic_knn(logits, 3, generator=torch.Generator().manual_seed(5))
    b = stochastic_knn(logits, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# --- exceptions -----------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(k=7), "k"),
        (dict(k=0), "k"),
        (dict(k=-1), "k"),
        (dict(k=2.0), "k"),
        (dict(k=3, mask=torch.tensor([True, False, False, False, False, True])), "k=3"),
        (dict(k=2, mask=torch.ones(6)), "mask"),
        (dict(k=2, mask=torch.ones(3, dtype=torch.bool)), "mask"),
        (dict(k=2, mask=torch.ones(3, 4, 6, dtype=torch.bool)), "mask"),
    ],
    ids=[
        "k>M",
        "k=0",
        "k<0",
        "k-float",
        "fewer-valid-than-k",
        "mask-dtype",
        "mask-shape",
        "mask-too-many-dims",
    ],
)
def test_exceptions_logits(rule: str, kwargs: dict, name: str) -> None:
    logits = torch.randn(4, 6)
    kwargs = dict(kwargs)
    k = kwargs.pop("k")
    with pytest.raises(ValueError, match=name):
        _rule(rule, logits, k, **kwargs)


@pytest.mark.parametrize("rule", ["continuous", "stochastic", "concrete"])
@pytest.mark.parametrize(
    "temperature",
    [float("nan"), torch.tensor([[1.0], [math.nan], [1.0], [1.0]]), 0.0, -1.0, torch.ones(3, 1)],
    ids=["nan", "nan-entry", "zero", "negative", "wrong-shape"],
)
def test_exceptions_temperature(rule: str, temperature) -> None:
    with pytest.raises(ValueError, match="temperature"):
        _rule(rule, torch.randn(4, 6), 2, temperature)


def test_exceptions_mode_and_rule() -> None:
    with pytest.raises(ValueError, match="mode"):
        neural_knn(torch.randn(3), 1, mode="literal")
    with pytest.raises(ValueError, match="rule"):
        NeuralKNN(2, rule="soft")
    with pytest.raises(ValueError, match="logits"):
        neural_knn(torch.tensor(1.0), 1)


# --- module ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("mode", ["code", "paper"])
def test_module_equals_functional(rule: str, mode: str, device) -> None:
    logits = torch.randn(3, 4, 9, device=device)
    temperature = torch.rand(3, 4, 1, device=device) + 0.5
    mask = _mask_with_at_least((3, 4, 9), 3, device)
    module = NeuralKNN(3, rule=rule, mode=mode)
    got = module(logits, temperature, mask, torch.Generator(device).manual_seed(2))
    if rule == "continuous":
        expected = neural_knn(logits, 3, temperature, mask, mode=mode)
    else:
        expected = _rule(rule, logits, 3, temperature, mask, seed=2)
    assert torch.equal(got, expected)
    assert "k=3" in repr(module) and rule in repr(module)


def test_temperature_from_log_clamps_and_keeps_gradients_finite() -> None:
    from n3net.knn import LOG_TEMPERATURE_BOUND, temperature_from_log

    log_t = torch.tensor([-100.0, -3.0, 0.0, 2.5, 100.0], requires_grad=True)
    t = temperature_from_log(log_t.to(torch.bfloat16), 0.1)
    assert t.dtype == torch.float32
    inside = 0.1 * torch.exp(log_t.detach()[1:4].bfloat16().float())
    torch.testing.assert_close(t[1:4], inside)
    bound = LOG_TEMPERATURE_BOUND
    torch.testing.assert_close(t[[0, 4]], 0.1 * torch.exp(torch.tensor([-bound, bound])))
    t64 = temperature_from_log(torch.zeros(2, dtype=torch.float64))
    assert t64.dtype == torch.float64


def test_tiny_learned_temperature_trains_without_nan() -> None:
    """A log-temperature of -60 (seen within 30 bf16 steps) made every gradient NaN."""
    from n3net.blocks import N3Block2d

    torch.manual_seed(0)
    block = N3Block2d(2, k=2, patch_size=4, stride=2, search_window=3, embed_features=4)
    with torch.no_grad():
        block.temperature_net[-1].bias.fill_(-60.0)
    x = torch.randn(1, 2, 12, 12, requires_grad=True)
    block(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode", ["code", "paper"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_t", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("validate", [False, True])
def test_no_grad_path_is_bitwise_the_autograd_path(
    mode: str, dtype: torch.dtype, with_t: bool, with_mask: bool, validate: bool
) -> None:
    """Without autograd the rounds run in place; the weights must be the same bit for bit,
    also for sharp rows (a weight of ~1, subnormal flush) and masked candidates, and the
    caller's logits must stay untouched."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 7, 33, generator=g, dtype=dtype) * 30
    logits[0, 0] = -1000.0
    logits[0, 0, 3] = 0.0  # one dominant candidate: w ~ 1, the others flushed to 0
    t = torch.rand(5, 7, 1, generator=g, dtype=dtype) + 0.05 if with_t else None
    mask = torch.rand(5, 7, 33, generator=g) > 0.3 if with_mask else None
    if mask is not None:
        mask[..., :6] = True
    before = logits.clone()
    expected = neural_knn(logits, 5, t, mask, mode=mode, validate=validate)  # autograd path
    with torch.no_grad():
        got = neural_knn(logits, 5, t, mask, mode=mode, validate=validate)
    assert torch.equal(got, expected)
    assert torch.equal(logits, before)
    with torch.inference_mode():
        assert torch.equal(neural_knn(logits, 5, t, mask, mode=mode, validate=validate), expected)


def _knn_and_grads(backward: str, logits: Tensor, k: int, t, mask, weights_grad: Tensor):
    x = logits.clone().requires_grad_()
    tt = t.clone().requires_grad_() if t is not None else None
    w = neural_knn(x, k, tt, mask, backward=backward)
    (w * weights_grad).sum().backward()
    return w.detach(), x.grad, tt.grad if tt is not None else None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_t", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_analytic_backward_matches_autograd(
    dtype: torch.dtype, with_t: bool, with_mask: bool, k: int
) -> None:
    """The hand-written backward gives the autograd path's weights bit for bit and its gradients
    to rounding, also for sharp rows (a weight of ~1, the rest flushed) and masked candidates."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 6, 17, generator=g, dtype=dtype) * 4
    logits[0, 0] = -1000.0
    logits[0, 0, 3] = 0.0  # one dominant candidate
    logits[1, 2, :2] = 3.0  # a tie at the top
    t = torch.rand(3, 6, 1, generator=g, dtype=dtype) + 0.05 if with_t else None
    mask = torch.rand(3, 6, 17, generator=g) > 0.3 if with_mask else None
    if mask is not None:
        mask[..., 3 : 3 + k] = True
    cot = torch.randn(3, 6, k, 17, generator=g, dtype=dtype)
    w0, gx0, gt0 = _knn_and_grads("autograd", logits, k, t, mask, cot)
    w1, gx1, gt1 = _knn_and_grads("analytic", logits, k, t, mask, cot)
    assert torch.equal(w0, w1)
    # Rounding, amplified in sharp rows: 1 / (1 - w + 1e-7) reaches 1e7 where a weight is ~1.
    rel = 1e-7 if dtype == torch.float64 else 2e-3
    for got, expected in ((gx1, gx0), (gt1, gt0)) if with_t else ((gx1, gx0),):
        torch.testing.assert_close(got, expected, rtol=0.0, atol=rel * float(expected.abs().max()))
    if mask is not None:
        assert not gx1[~mask].any()


def test_analytic_backward_gradcheck_and_edge_sizes() -> None:
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(2, 3, 1, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    mask = torch.ones(2, 3, 7, dtype=torch.bool)
    mask[0, 1, 2] = False
    assert torch.autograd.gradcheck(
        lambda a, b: neural_knn(a, 3, b, mask, backward="analytic"), (logits, t)
    )
    # every candidate picked (K = M), one candidate, no queries
    for shape, k in (((2, 4), 4), ((3, 1), 1), ((0, 5), 2)):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        w = neural_knn(x, k, backward="analytic")
        assert w.shape == (*shape[:-1], k, shape[-1])
        w.square().sum().backward()
        y = x.detach().clone().requires_grad_()
        neural_knn(y, k).square().sum().backward()
        torch.testing.assert_close(x.grad, y.grad)


def test_analytic_backward_arguments() -> None:
    with pytest.raises(ValueError, match="mode='code'"):
        neural_knn(torch.randn(4, 6), 2, mode="paper", backward="analytic")
    with pytest.raises(ValueError, match="backward must be"):
        NeuralKNN(2, backward="numeric")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode='code'"):
        NeuralKNN(2, mode="paper", backward="analytic")
    with torch.no_grad():  # without autograd both are the in-place rounds
        x = torch.randn(4, 9)
        assert torch.equal(neural_knn(x, 3, backward="analytic"), neural_knn(x, 3))
