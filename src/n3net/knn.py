"""Neighbour selection rules: the continuous KNN relaxation and its baselines.

Axis legend: ``M`` candidates per query, ``K`` neighbours (the paper's k); ``...`` any number of
leading query axes (batch, queries).

Implements Plötz & Roth (NeurIPS 2018), §3:

* :func:`neural_knn` — the continuous deterministic relaxation (Eqs. 8-11);
* :func:`hard_knn` — ordinary KNN as one-hot weights (the t -> 0 limit);
* :func:`stochastic_knn` — the stochastic sampling rule (Eq. 5);
* :func:`concrete_knn` — the Concrete / Gumbel-softmax relaxation (baseline (v) of Table 1).

All rules return weights of shape ``(..., K, M)``; row ``j`` of the weights forms neighbour
``j`` as ``X_j = sum_i w[j, i] * x_i``. Masked candidates (``mask == False``) get weight zero.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "NeuralKNN",
    "concrete_knn",
    "hard_knn",
    "log1mexp",
    "neural_knn",
    "stochastic_knn",
    "temperature_from_log",
]

TemperatureMode = Literal["code", "paper"]
Backward = Literal["autograd", "analytic"]
_LOG_HALF = -math.log(2.0)
_GUARD = 1e-7
LOG_TEMPERATURE_BOUND = 30.0


def temperature_from_log(log_temperature: Tensor, scale: float = 1.0) -> Tensor:
    """Learned temperature ``t = scale * exp(l)`` with ``l`` clamped to [-30, 30], in float32.

    The clamp keeps training finite. Dividing the logits by a tiny ``t`` has the gradient
    ``-logits / t**2``; below ``t ~ 1e-19`` the square underflows to 0 in float32, the gradient
    becomes ``0 * inf = NaN`` (the weights are one-hot there, so the true gradient is 0) and one
    such query poisons every parameter upstream. A learned log-temperature map reaches ``l < -50``
    within a few dozen steps of bf16 training. Inside the bounds nothing changes; beyond them the
    rule is already hard KNN (``t <= 1e-14`` against logits of order 1) or uniform averaging, so the
    forward pass is the same to float32 precision and only a gradient that is zero anyway is cut.
    The result is float32 (float64 for float64 input) even when ``l`` comes from bf16 autocast.

    Shape:
        log_temperature: any -> same.
    """
    dtype = torch.promote_types(log_temperature.dtype, torch.float32)
    bound = LOG_TEMPERATURE_BOUND
    return scale * torch.exp(log_temperature.to(dtype).clamp(-bound, bound))


class _Log1mExp(torch.autograd.Function):
    """log(1 - exp(a)) for a <= 0, exact forward, finite backward at a = 0."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:  # type: ignore[override]
        # Two branches (Mächler 2012): log1p(-e^a) is accurate for a < log 1/2,
        # log(-expm1(a)) for a closer to 0. exp(-inf) = 0 gives log1mexp(-inf) = 0.
        out = torch.where(
            a < _LOG_HALF,
            torch.log1p(-torch.exp(torch.clamp(a, max=_LOG_HALF))),
            torch.log(-torch.expm1(torch.clamp(a, min=_LOG_HALF))),
        )
        ctx.save_for_backward(a)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        # d/da log(1 - e^a) = -e^a / (1 - e^a); the guard keeps it finite when a weight is ~1
        # (the same 1e-7 the authors add inside the log), and e^-inf = 0 gives 0 for masked items.
        e = torch.exp(a)
        return grad * (-e / (-torch.expm1(a) + _GUARD))


def log1mexp(a: Tensor) -> Tensor:
    """Compute ``log(1 - exp(a))`` stably for ``a <= 0``.

    The forward is exact (``-inf`` at ``a == 0``); the backward adds 1e-7 to ``1 - exp(a)`` so a
    weight that reached 1 still has a finite gradient.

    Example:
        >>> log1mexp(torch.tensor([-1.0, 0.0]))
        tensor([-0.4587,    -inf])
        >>> log1mexp(torch.tensor([-math.inf])).abs().item()  # log(1 - 0), zero of either sign
        0.0
    """
    return _Log1mExp.apply(a)


class _Log1mSoftmax(torch.autograd.Function):
    """log(1 - w) for the rows of a softmax, given log w and w (a cheaper log1mexp).

    In a row of softmax weights only the largest can exceed 1/2, so ``log1p(-w)`` is accurate
    everywhere else and the largest alone goes through ``log(-expm1(log w))``.
    """

    @staticmethod
    def forward(ctx, log_w: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        out = torch.log1p(-w)
        top = log_w.argmax(-1, keepdim=True)
        out.scatter_(-1, top, torch.log(-torch.expm1(log_w.gather(-1, top))))
        ctx.save_for_backward(w, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        w, out = ctx.saved_tensors
        # -w / (1 - w), with 1 - w = exp(out) exact and the authors' 1e-7 guard.
        return grad * (-w / (torch.exp(out) + _GUARD)), None


# exp() of arguments below about -87 gives subnormal floats, which CPUs compute 10-30x slower;
# such weights (< 1.7e-38) are set to exactly 0 instead (masked candidates: exp(-inf) = 0 anyway).
_EXP_FLOOR = -87.0


def _exp_weights(log_w: Tensor) -> Tensor:
    """``exp(log_w)`` with weights below ``exp(-87)`` flushed to 0 (see ``_EXP_FLOOR``)."""
    return torch.where(log_w < _EXP_FLOOR, 0.0, torch.exp(log_w.clamp_min(_EXP_FLOOR)))


def _on_host(x: Tensor) -> bool:
    """Whether value checks may read ``x``: on an accelerator they would synchronise the device
    on every call, so checks that depend on values (NaN, counts) run for CPU tensors only."""
    return x.device.type == "cpu"


def _check_logits(logits: Tensor, k: int, mask: Tensor | None) -> Tensor:
    """Validate arguments and return the logits with masked candidates set to -inf."""
    if not isinstance(logits, Tensor) or logits.dim() < 1:
        raise ValueError("logits must be a tensor of shape (..., M)")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    m = logits.shape[-1]
    if k > m:
        raise ValueError(f"k must be <= the number of candidates, got k={k} > M={m}")
    if mask is None:
        return logits
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    try:
        mask = mask.expand_as(logits)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to logits {tuple(logits.shape)}"
        ) from None
    if _on_host(mask) and mask.numel() and int(mask.sum(-1).min()) < k:
        raise ValueError(
            f"k must be <= the number of valid candidates of every query, got k={k} > "
            f"{int(mask.sum(-1).min())}"
        )
    return logits.masked_fill(~mask, -math.inf)


def _check_temperature(temperature: Tensor | float | None, logits: Tensor) -> Tensor | None:
    if temperature is None:
        return None
    t = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
    if _on_host(t) and torch.isnan(t).any():
        raise ValueError("temperature must not be NaN")
    if _on_host(t) and (t <= 0).any():
        raise ValueError("temperature must be > 0")
    try:
        torch.broadcast_shapes(t.shape, logits.shape)
    except RuntimeError:
        raise ValueError(
            f"temperature of shape {tuple(t.shape)} does not broadcast to logits "
            f"{tuple(logits.shape)}; give one temperature per query as (..., 1)"
        ) from None
    return t


def _divide(alpha: Tensor, t: Tensor) -> Tensor:
    """``alpha / t`` with ``-inf`` entries (masked or already chosen candidates) kept out of
    the division: their gradient to ``t`` would be ``0 * inf = NaN``."""
    dead = alpha == -math.inf
    if _on_host(alpha) and not bool(dead.any()):
        return alpha / t
    return (alpha.masked_fill(dead, 0.0) / t).masked_fill(dead, -math.inf)


def _rounds_no_grad(
    alpha: Tensor, k: int, t: Tensor | None, tops: list[tuple[Tensor, Tensor]] | None = None
) -> Tensor:
    """The rounds of :func:`neural_knn` without autograd, in place on ``alpha`` (a fresh tensor).

    Same operations on the same values as the autograd path, so the same weights bit for bit,
    with fewer passes over memory: ``exp`` writes straight into the output (no stack), the
    subnormal flush is one masked fill, and ``log(1 - w)`` and the logit update run in place.
    ``t`` is the temperature of ``mode="paper"`` (divides every round), else None. ``tops``, if
    given, receives per updating round the row's largest weight's index and its exact ``1 - w``
    (for the analytic backward).

    Shape:
        alpha: (..., M) -> weights (..., K, M); tops: K - 1 pairs of (..., 1).
    """
    out = alpha.new_empty(*alpha.shape[:-1], k, alpha.shape[-1])
    for j in range(k):
        scaled = alpha if t is None else _divide(alpha, t)
        log_w = torch.log_softmax(scaled, dim=-1)
        log_w.masked_fill_(log_w < _EXP_FLOOR, -math.inf)  # as _exp_weights: exp() gives 0
        w = out.select(-2, j)
        torch.exp(log_w, out=w)
        if j + 1 < k:  # Eq. 10 in log space, as _Log1mSoftmax.forward
            update = torch.neg(w).log1p_()
            top = log_w.argmax(-1, keepdim=True)
            one_minus_top = -torch.expm1(log_w.gather(-1, top))
            update.scatter_(-1, top, torch.log(one_minus_top))
            alpha.add_(update)
            if tops is not None:
                tops.append((top, one_minus_top))
    return out


class _AnalyticRounds(torch.autograd.Function):
    """The ``k`` rounds of the continuous rule (Eqs. 9-10, ``mode="code"``: the temperature is
    already in the logits) with a hand-written backward that keeps only the weights.

    Forward: :func:`_rounds_no_grad`, the same weights bit for bit as the autograd path.
    Backward, with ``g_j = dL/dw^j`` and ``h_j = dL/da^j`` (``h_{K+1} = 0``), for ``j = K .. 1``:
    the gradient reaching ``log w^j`` is ``d_j = w^j * (g_j - h_{j+1} / (1 - w^j + 1e-7))``
    (through ``exp`` and through the update ``log(1 - w^j)``, with the autograd path's guard),
    and ``h_j = h_{j+1} + d_j - w^j * sum(d_j)`` (the softmax's backward plus the identity of
    ``a^{j+1} = a^j + ...``). The gradient of the logits is ``h_1``. The autograd path keeps
    ``log w``, ``w`` and ``log(1 - w)`` of every round; this one only the output, so training
    over large candidate sets (the set N3 block, ``M`` in the thousands) takes fewer passes over
    memory and less of it.

    Shape:
        alpha: (..., M) -> weights (..., K, M).
    """

    @staticmethod
    def forward(ctx, alpha: Tensor, k: int) -> Tensor:  # type: ignore[override]
        tops: list[tuple[Tensor, Tensor]] = []
        weights = _rounds_no_grad(alpha.detach().clone(), k, None, tops)
        ctx.save_for_backward(weights, *(x for pair in tops for x in pair))
        return weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        weights, *saved = ctx.saved_tensors
        k = weights.shape[-2]
        h: Tensor | None = None  # dL/da^{j+1}
        for j in reversed(range(k)):
            w, g = weights.select(-2, j), grad.select(-2, j)
            if h is None:
                d = w * g
            else:
                top, one_minus_top = saved[2 * j], saved[2 * j + 1]
                one_minus = torch.rsub(w, 1.0).scatter_(-1, top, one_minus_top).add_(_GUARD)
                d = torch.div(h, one_minus).neg_().add_(g).mul_(w)
            step = torch.addcmul(d, w, d.sum(-1, keepdim=True), value=-1.0)
            h = step if h is None else h.add_(step)
        assert h is not None
        return h, None


def _check_mode(mode: object, backward: object) -> None:
    if mode not in ("code", "paper"):
        raise ValueError(f"mode must be 'code' or 'paper', got {mode!r}")
    if backward not in ("autograd", "analytic"):
        raise ValueError(f"backward must be 'autograd' or 'analytic', got {backward!r}")
    if backward == "analytic" and mode != "code":
        raise ValueError("backward='analytic' needs mode='code' (the temperature scales logits)")


def neural_knn(
    logits: Tensor,
    k: int,
    temperature: Tensor | float | None = None,
    mask: Tensor | None = None,
    *,
    mode: TemperatureMode = "code",
    validate: bool = True,
    backward: Backward = "autograd",
) -> Tensor:
    """Continuous nearest-neighbour selection (Plötz & Roth 2018, Eqs. 8-11).

    Round ``j`` takes ``w^j = softmax(a^j)`` and updates ``a^{j+1} = a^j + log(1 - w^j)``, so
    what earlier rounds picked is pushed down. With ``mode="code"`` (default, what the authors'
    released weights need) the temperature scales the initial logits once, ``a^1 = logits / t``;
    with ``mode="paper"`` every round divides its whole logit by ``t``:
    ``w^j = softmax(a^j / t)`` with ``a^1 = logits``. Both agree at ``t = 1`` and as ``t -> 0``,
    where the weights become :func:`hard_knn`'s one-hot rows.

    Args:
        logits: similarity of each query to its candidates, usually negative distances.
        k: number of neighbour rounds.
        temperature: per-query temperature ``t > 0``, broadcastable to ``(..., 1)``; None means 1.
        mask: optional bool tensor broadcastable to ``logits``; False marks an invalid candidate.
        mode: ``"code"`` or ``"paper"`` placement of the temperature, see above.
        validate: check arguments and values (NaN or non-positive temperatures, masks with fewer
            than ``k`` valid candidates). Callers that guarantee them (the N3 blocks) pass False
            to skip the extra passes.
        backward: ``"autograd"`` (the reference) differentiates the rounds op by op;
            ``"analytic"`` (``mode="code"`` only) runs them without autograd and differentiates
            them by hand, keeping only the weights (see ``_AnalyticRounds``): the same forward
            bit for bit, the gradient to rounding, less time and memory for large ``M``.

    Returns:
        Weights, each row non-negative and summing to 1.

    Shape:
        logits: (..., M) -> weights: (..., K, M).

    Example:
        >>> neural_knn(torch.randn(2, 5, 10), k=3).shape
        torch.Size([2, 5, 3, 10])
    """
    _check_mode(mode, backward)
    given = logits  # the caller's tensor: the in-place rounds below must not touch it
    if validate:
        t = _check_temperature(temperature, logits)
    else:  # trusted caller (N3 blocks): finite logits, valid masks, positive temperatures
        t = None if temperature is None else torch.as_tensor(temperature, dtype=logits.dtype)
    if t is not None and mode == "code":
        # Scale before masking: masked logits then never meet the division (cheaper than
        # guarding -inf entries against a NaN gradient for t).
        logits = _divide(logits, t) if validate else logits / t
    if validate:
        alpha = _check_logits(logits, k, mask)
    else:
        alpha = logits if mask is None else logits.masked_fill(~mask, -math.inf)
    paper_t = t if mode == "paper" else None  # divides every round
    if not torch.is_grad_enabled():
        return _rounds_no_grad(alpha.clone() if alpha is given else alpha, k, paper_t)
    if backward == "analytic":
        return _AnalyticRounds.apply(alpha, k)
    weights = []
    for j in range(k):
        scaled = alpha if paper_t is None else _divide(alpha, paper_t)
        log_w = torch.log_softmax(scaled, dim=-1)
        w = _exp_weights(log_w)
        weights.append(w)
        if j + 1 < k:  # the last round's update would be unused
            alpha = alpha + _Log1mSoftmax.apply(log_w, w)  # Eq. 10 in log space: a + log(1 - w)
    return torch.stack(weights, dim=-2)


def hard_knn(logits: Tensor, k: int, mask: Tensor | None = None) -> Tensor:
    """Pick the ``k`` largest logits as one-hot rows (ordinary KNN, the ``t -> 0`` limit).

    Ties are broken as :func:`torch.topk` breaks them.

    Shape:
        logits: (..., M) -> weights: (..., K, M), row j one-hot at the j-th largest logit.

    Example:
        >>> hard_knn(torch.tensor([0.0, 3.0, 1.0]), k=2).tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    alpha = _check_logits(logits, k, mask)
    index = alpha.topk(k, dim=-1).indices  # (..., K)
    out = torch.zeros(
        *alpha.shape[:-1], k, alpha.shape[-1], dtype=logits.dtype, device=logits.device
    )
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def _gumbel(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    tiny = torch.finfo(like.dtype).tiny
    return -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))


def stochastic_knn(
    logits: Tensor,
    k: int,
    temperature: Tensor | float | None = None,
    mask: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``k`` neighbours without replacement (the paper's stochastic rule, Eq. 5).

    Round ``j`` samples ``w^j ~ Cat(softmax(a^j / t))``; the drawn candidate's logit becomes
    ``-inf`` (``a^{j+1} = a^j + log(1 - w^j)`` with one-hot ``w^j``). Not differentiable; as
    ``t -> 0`` it is KNN. Sampling uses the Gumbel-max trick with ``generator``.

    Shape:
        logits: (..., M) -> weights: (..., K, M), one-hot rows.
    """
    alpha = _check_logits(logits, k, mask)
    t = _check_temperature(temperature, logits)
    scaled = _divide(alpha, t) if t is not None else alpha
    # Gumbel-top-k draws k items without replacement with exactly Eq. 5's probabilities.
    perturbed = scaled + _gumbel(scaled.shape, scaled, generator)
    return hard_knn(perturbed.detach(), k)


def concrete_knn(
    logits: Tensor,
    k: int,
    temperature: Tensor | float | None = None,
    mask: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Relax the stochastic rule with Concrete / Gumbel-softmax samples (Table 1, baseline (v)).

    Round ``j`` draws ``w^j = softmax((a^j + g^j) / t)`` with Gumbel noise ``g^j`` and updates
    ``a^{j+1} = a^j + log(1 - w^j)``. The temperature ``t`` is the Concrete annealing
    parameter (the paper predicts it per query with a network). Stochastic and differentiable.

    Shape:
        logits: (..., M) -> weights: (..., K, M), each row summing to 1.
    """
    alpha = _check_logits(logits, k, mask)
    t = _check_temperature(temperature, logits)
    weights = []
    for _ in range(k):
        noisy = alpha + _gumbel(alpha.shape, alpha, generator)
        log_w = torch.log_softmax(_divide(noisy, t) if t is not None else noisy, dim=-1)
        weights.append(log_w.exp())
        alpha = alpha + log1mexp(log_w)
    return torch.stack(weights, dim=-2)


class NeuralKNN(nn.Module):
    """Module wrapper of the selection rules, choosing one by name.

    Args:
        k: number of neighbours.
        rule: ``"continuous"`` (:func:`neural_knn`), ``"hard"``, ``"stochastic"`` or
            ``"concrete"``.
        mode: temperature placement for the continuous rule (see :func:`neural_knn`).
        validate: value checks of the continuous rule (see :func:`neural_knn`).
        backward: how the continuous rule is differentiated (see :func:`neural_knn`).

    Shape:
        logits: (..., M), temperature: broadcastable to (..., 1) -> (..., K, M).

    Example:
        >>> NeuralKNN(k=2)(torch.randn(4, 6)).shape
        torch.Size([4, 2, 6])
    """

    def __init__(
        self,
        k: int,
        rule: Literal["continuous", "hard", "stochastic", "concrete"] = "continuous",
        mode: TemperatureMode = "code",
        validate: bool = True,
        backward: Backward = "autograd",
    ) -> None:
        super().__init__()
        if rule not in ("continuous", "hard", "stochastic", "concrete"):
            raise ValueError(f"rule must be continuous/hard/stochastic/concrete, got {rule!r}")
        _check_mode(mode, backward)
        self.k, self.rule, self.mode, self.validate = k, rule, mode, validate
        self.backward = backward

    def forward(
        self,
        logits: Tensor,
        temperature: Tensor | float | None = None,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if self.rule == "continuous":
            return neural_knn(
                logits,
                self.k,
                temperature,
                mask,
                mode=self.mode,
                validate=self.validate,
                backward=self.backward,
            )
        if self.rule == "hard":
            return hard_knn(logits, self.k, mask)
        if self.rule == "stochastic":
            return stochastic_knn(logits, self.k, temperature, mask, generator=generator)
        return concrete_knn(logits, self.k, temperature, mask, generator=generator)

    def extra_repr(self) -> str:
        return f"k={self.k}, rule={self.rule!r}, mode={self.mode!r}, backward={self.backward!r}"
