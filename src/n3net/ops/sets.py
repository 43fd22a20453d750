"""Neighbour aggregation for sets and sequences (paper §4, §5.5): the N3 block's core op.

Axis legend: ``B`` batch, ``N`` items (every item is a query), ``M`` candidates per query, ``K``
neighbours (the paper's k), ``C`` input channels, ``E`` embedding channels, ``V`` channels of the
aggregated tensor ``Y``.

The candidates of query ``i`` are chosen in one of three ways:

* all items (default, ``M = N``): the set reasoning of the correspondence network (§5.5);
* a bool ``mask`` of allowed pairs, ``(B, N, N)`` or ``(N, N)``: all items, minus the pairs the
  mask forbids;
* explicit item indices ``candidates``, ``(B, N, M)`` or ``(N, M)``, ``-1`` marking padding
  (e.g. :func:`sequence_candidates` for a local window along a sequence). A ``mask`` given with
  ``candidates`` has one flag per candidate slot, ``(B, N, M)`` or ``(N, M)``.

With ``exclude_self=True`` (default) an item is never its own candidate, in every mode: the
diagonal of a mask and index entries equal to the query are dropped. Padded, masked and self
candidates all get weight exactly zero.

Two implementations of :func:`set_aggregate` agree to rounding:

* ``reference`` gathers every candidate's embedding and value vector, ``(B, N, M, E)`` and
  ``(B, N, M, V)``, and sums ``(q - c)^2`` directly: short and obviously correct; in all-pairs
  mode it materialises ``(B, N, N, E)``.
* ``fast`` processes queries in chunks. In all-pairs and mask mode the squared distances are
  ``|q|^2 + |c|^2 - 2 q.c``, one matrix product ``(chunk, E) x (E, N)``, and the aggregation is
  another, weights ``(chunk * K, N) x (N, V)``, so no ``(N, N, E)`` or ``(N, N, V)`` tensor
  exists; memory per chunk is ``O(chunk * N * K)`` plus ``O(N * (E + V))`` for the inputs. In
  index mode a chunk gathers ``(chunk, M, E)`` and ``(chunk, M, V)``: ``O(N * M * (E + V))`` over
  all chunks, fine for the small explicit ``M`` this mode is for. With ``logits_fn`` (batch norm)
  the logits of all chunks are computed first, ``O(B * N * M)``, so that training-mode
  statistics cover every valid pair; weights and aggregation then run per chunk.

Under autograd the weights of every chunk are kept for the backward pass (``O(B * N * K * M)``
in all); chunking bounds the transient memory, and under ``torch.no_grad`` the whole pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from n3net.knn import NeuralKNN
from n3net.ops.windows import Impl, WeightFn

__all__ = [
    "LogitsFn",
    "sequence_candidates",
    "set_aggregate",
    "set_aggregate_fast",
    "set_aggregate_reference",
]

# (logits (B, N, M), valid (B, N, M) bool or None) -> logits, e.g. LogitsBatchNorm
LogitsFn = Callable[[Tensor, Tensor | None], Tensor]
_CHUNK_BYTES = 64 << 20  # auto chunk: a chunk's (B, chunk, K, M) weights stay under ~64 MB


def sequence_candidates(length: int, radius: int, device: torch.device | None = None) -> Tensor:
    """Candidates of a local window along a sequence: items ``i - radius .. i + radius``, not ``i``.

    Slots falling outside ``[0, length)`` are ``-1`` (padding, ignored by :func:`set_aggregate`).

    Shape:
        -> (N, 2 * radius) long, ``N = length``.

    Example:
        >>> sequence_candidates(4, 1).tolist()
        [[-1, 1], [0, 2], [1, 3], [2, -1]]
    """
    if not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius must be a positive integer, got {radius!r}")
    offsets = torch.arange(-radius, radius + 1, device=device)
    offsets = offsets[offsets != 0]  # (2 * radius,)
    index = torch.arange(length, device=device)[:, None] + offsets  # (N, 2 * radius)
    return index.masked_fill((index < 0) | (index >= length), -1)


@dataclass(frozen=True)
class _Candidates:
    """Validated candidates: all items (``index is None``) or explicit indices."""

    b: int
    n: int
    exclude_self: bool
    device: torch.device
    index: Tensor | None  # (B, N, M) long, padding replaced by 0; None = all N items
    allowed: Tensor | None  # (B, N, M) bool: user mask (all-pairs) or valid slots (index mode)

    @property
    def m(self) -> int:
        return self.n if self.index is None else self.index.shape[-1]

    def valid(self, start: int, stop: int) -> Tensor | None:
        """Valid pairs of queries ``start:stop``, (B, stop - start, M); None if all are valid."""
        rows = self.allowed[:, start:stop] if self.allowed is not None else None
        if self.index is None and self.exclude_self:
            query = torch.arange(start, stop, device=self.device)[:, None]
            not_self = query != torch.arange(self.n, device=self.device)  # (chunk, N)
            rows = not_self.expand(self.b, -1, -1) if rows is None else rows & not_self
        return rows

    def fewest(self) -> int | None:
        """Smallest number of valid candidates of any query (None when there are no queries)."""
        if self.index is None and self.allowed is None:
            return self.n - int(self.exclude_self)
        valid = self.valid(0, self.n)
        return int(valid.sum(-1).min()) if valid.numel() else None


def _check_mask(mask: object, shape: tuple[int, int, int], what: str) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor, got {got}")
    if tuple(mask.shape) == shape[1:]:
        mask = mask.expand(shape[0], -1, -1)
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"mask must be {what} {shape} or {shape[1:]}, got shape {tuple(mask.shape)}"
        )
    return mask


def _check_candidates(
    candidates: object,
    mask: Tensor | None,
    b: int,
    n: int,
    exclude_self: bool,
    device: torch.device,
) -> _Candidates:
    if candidates is None:
        allowed = None if mask is None else _check_mask(mask, (b, n, n), "(B, N, N) =")
        allowed = None if allowed is None else allowed.to(device)
        return _Candidates(b, n, exclude_self, device, None, allowed)
    if (
        not isinstance(candidates, Tensor)
        or candidates.dtype == torch.bool
        or candidates.is_floating_point()
        or candidates.is_complex()
        or candidates.dim() not in (2, 3)
    ):
        got = (
            f"{candidates.dtype} of shape {tuple(candidates.shape)}"
            if isinstance(candidates, Tensor)
            else type(candidates).__name__
        )
        raise ValueError(f"candidates must be an integer tensor (B, N, M) or (N, M), got {got}")
    if candidates.dim() == 2:
        candidates = candidates.expand(b, -1, -1)
    if tuple(candidates.shape[:2]) != (b, n):
        raise ValueError(
            f"candidates must be (B, N, M) or (N, M) with B, N = {b}, {n}, got shape "
            f"{tuple(candidates.shape)}"
        )
    candidates = candidates.to(device=device, dtype=torch.long)
    if candidates.numel():
        lo, hi = int(candidates.min()), int(candidates.max())
        if lo < -1 or hi >= n:
            raise ValueError(
                f"candidates must be item indices in [0, {n}) or -1 for padding, got values in "
                f"[{lo}, {hi}]"
            )
    valid = candidates >= 0  # (B, N, M)
    if exclude_self:
        valid = valid & (candidates != torch.arange(n, device=device)[:, None])
    if mask is not None:
        shape = (b, n, candidates.shape[-1])
        valid = valid & _check_mask(mask, shape, "one flag per candidate slot,").to(device)
    return _Candidates(b, n, exclude_self, device, candidates.clamp_min(0), valid)


def _check_temperature(temperature: Tensor | float | None, like: Tensor) -> Tensor | None:
    """Per-query temperature as (B, N, 1), or None."""
    if temperature is None:
        return None
    b, n = like.shape[:2]
    t = torch.as_tensor(temperature, dtype=like.dtype, device=like.device)
    try:
        t = t.expand(b, n)
    except RuntimeError:
        raise ValueError(
            f"temperature must be broadcastable to (B, N) = ({b}, {n}), got shape {tuple(t.shape)}"
        ) from None
    if torch.isnan(t).any():
        raise ValueError("temperature must not be NaN")
    if (t <= 0).any():
        raise ValueError(f"temperature must be > 0, got minimum {float(t.min())}")
    return t[..., None]


def _prepare(
    embedding: Tensor,
    values: Tensor,
    k: int,
    temperature: Tensor | float | None,
    candidates: Tensor | None,
    mask: Tensor | None,
    exclude_self: bool,
) -> tuple[_Candidates, Tensor | None]:
    """Validate the public arguments of :func:`set_aggregate`."""
    if not isinstance(embedding, Tensor) or embedding.dim() != 3:
        got = tuple(embedding.shape) if isinstance(embedding, Tensor) else type(embedding).__name__
        raise ValueError(f"embedding must be (B, N, E), got {got}")
    b, n = embedding.shape[:2]
    if not isinstance(values, Tensor) or values.dim() != 3 or tuple(values.shape[:2]) != (b, n):
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be (B, N, V) with B, N = {b}, {n} as embedding, got {got}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    cands = _check_candidates(candidates, mask, b, n, exclude_self, embedding.device)
    fewest = cands.fewest()
    if fewest is not None and k > fewest:
        where = (
            f"N={n} items{', self excluded' if exclude_self else ''}"
            if cands.index is None and cands.allowed is None
            else "after masking, padding and self-exclusion"
        )
        raise ValueError(
            f"k must be <= the number of valid candidates of every query, got k={k} > "
            f"{fewest} ({where})"
        )
    return cands, _check_temperature(temperature, embedding)


def set_aggregate_reference(
    embedding: Tensor,
    values: Tensor,
    k: int,
    weight_fn: WeightFn,
    *,
    temperature: Tensor | float | None = None,
    candidates: Tensor | None = None,
    mask: Tensor | None = None,
    exclude_self: bool = True,
    logits_fn: LogitsFn | None = None,
) -> Tensor:
    """Neighbour volumes of every item by explicit gathering (the reference implementation).

    For each query item ``i``: logits are minus the squared Euclidean distances
    ``-|E_i - E_c|^2`` to its candidates ``c`` (paper §4, ``D_ij``); ``logits_fn`` (e.g. a batch
    norm over the valid pairs) transforms them; ``weight_fn`` turns them, with the query's
    temperature, into ``K`` weight rows (the continuous KNN, Eqs. 8-11); neighbour ``j`` is
    ``N_j[i] = sum_c w[i, j, c] * Y_c``. Invalid candidates get weight zero.

    Args:
        embedding: ``E``, the vectors to match on.
        values: ``Y``, the vectors to aggregate.
        k: number of neighbours.
        weight_fn: selection rule, ``(logits, temperature (B, N, 1) or None, valid or None)
            -> weights``, e.g. ``NeuralKNN(k)``.
        temperature: per-query temperature ``t > 0``, broadcastable to ``(B, N)``; None means
            the rule's default (1).
        candidates: explicit candidate indices, ``-1`` for padding; None means all items.
        mask: allowed pairs ``(B, N, N)`` / ``(N, N)``, or with ``candidates`` allowed slots
            ``(B, N, M)`` / ``(N, M)``.
        exclude_self: never let an item be its own candidate.
        logits_fn: ``(logits, valid) -> logits``, applied before the rule.

    Returns:
        The ``K`` neighbour vectors of every item.

    Shape:
        embedding: (B, N, E), values: (B, N, V) -> (B, N, K, V).
    """
    cands, t = _prepare(embedding, values, k, temperature, candidates, mask, exclude_self)
    b, n = embedding.shape[:2]
    index = cands.index
    if index is None:
        index = torch.arange(n, device=embedding.device).expand(b, n, n)  # (B, N, M=N)
    valid = cands.valid(0, n)  # (B, N, M) or None
    batch = torch.arange(b, device=embedding.device)[:, None, None]
    e_cand = embedding[batch, index]  # (B, N, M, E)
    logits = -((embedding[:, :, None, :] - e_cand) ** 2).sum(-1)  # (B, N, M)
    if logits_fn is not None:
        logits = logits_fn(logits, valid)
    weights = weight_fn(logits, t, valid)  # (B, N, K, M)
    if valid is not None:
        weights = weights.masked_fill(~valid[:, :, None, :], 0.0)
    return torch.einsum("bnkm,bnmv->bnkv", weights, values[batch, index])


def _check_chunk_size(chunk_size: object) -> None:
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def _auto_chunk(chunk_size: int | None, b: int, n: int, k: int, m: int, itemsize: int) -> int:
    _check_chunk_size(chunk_size)
    if chunk_size is not None:
        return chunk_size
    per_query = max(b, 1) * k * max(m, 1) * itemsize  # bytes of one query's weights
    return max(1, min(max(n, 1), _CHUNK_BYTES // per_query))


def set_aggregate_fast(
    embedding: Tensor,
    values: Tensor,
    k: int,
    weight_fn: WeightFn,
    *,
    temperature: Tensor | float | None = None,
    candidates: Tensor | None = None,
    mask: Tensor | None = None,
    exclude_self: bool = True,
    logits_fn: LogitsFn | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Neighbour volumes by chunked matrix products; same result as the reference.

    See :func:`set_aggregate_reference` for the arguments and the module docstring for the
    method and its memory. ``chunk_size`` is the number of queries per chunk; None picks it so
    that a chunk's ``(B, chunk, K, M)`` weights stay under about 64 MB.

    Shape:
        embedding: (B, N, E), values: (B, N, V) -> (B, N, K, V).
    """
    cands, t = _prepare(embedding, values, k, temperature, candidates, mask, exclude_self)
    b, n = embedding.shape[:2]
    chunk = _auto_chunk(chunk_size, b, n, k, cands.m, embedding.element_size())
    batch = torch.arange(b, device=embedding.device)[:, None, None]
    sq = (embedding * embedding).sum(-1) if cands.index is None else None  # (B, N)

    def chunk_logits(start: int, stop: int) -> Tensor:
        query = embedding[:, start:stop]  # (B, c, E)
        if cands.index is None:
            dots = torch.matmul(query, embedding.transpose(1, 2))  # (B, c, N)
            dist = sq[:, start:stop, None] + sq[:, None, :] - 2 * dots
            return -dist.clamp_min(0)  # rounding may leave tiny negatives
        e_cand = embedding[batch, cands.index[:, start:stop]]  # (B, c, M, E)
        return -((query[:, :, None, :] - e_cand) ** 2).sum(-1)  # (B, c, M)

    spans = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
    # The library's rules give an invalid candidate (logit -inf) weight exactly 0 themselves;
    # zeroing their weights again would cost a pass over (B, c, K, M) and a second copy of it.
    rule_zeroes_invalid = isinstance(weight_fn, NeuralKNN)
    all_logits = None
    if logits_fn is not None:
        # Training-mode batch norm needs its statistics over every valid pair: O(B * N * M).
        all_logits = torch.cat([chunk_logits(a, z) for a, z in spans], 1) if spans else None
        if all_logits is not None:
            all_logits = logits_fn(all_logits, cands.valid(0, n))
    out = []
    for start, stop in spans:
        logits = all_logits[:, start:stop] if all_logits is not None else chunk_logits(start, stop)
        valid = cands.valid(start, stop)  # (B, c, M) or None
        weights = weight_fn(logits, t[:, start:stop] if t is not None else None, valid)
        if valid is not None and not rule_zeroes_invalid:
            weights = weights.masked_fill(~valid[:, :, None, :], 0.0)  # (B, c, K, M)
        if cands.index is None:
            agg = torch.matmul(weights.flatten(1, 2), values)  # (B, c*K, V)
            out.append(agg.unflatten(1, (stop - start, k)))  # (B, c, K, V)
        else:
            out.append(torch.matmul(weights, values[batch, cands.index[:, start:stop]]))
    if not out:
        return values.new_zeros(b, n, k, values.shape[-1])
    return torch.cat(out, 1)


def set_aggregate(
    embedding: Tensor,
    values: Tensor,
    k: int,
    weight_fn: WeightFn,
    *,
    temperature: Tensor | float | None = None,
    candidates: Tensor | None = None,
    mask: Tensor | None = None,
    exclude_self: bool = True,
    logits_fn: LogitsFn | None = None,
    chunk_size: int | None = None,
    impl: Impl = "auto",
) -> Tensor:
    """Front door: ``impl="reference"`` or ``"fast"``; ``"auto"`` picks the fast path.

    See :func:`set_aggregate_reference` for the arguments (``chunk_size`` applies to the fast
    path only).

    Shape:
        embedding: (B, N, E), values: (B, N, V) -> (B, N, K, V).

    Example:
        >>> from n3net.knn import NeuralKNN
        >>> set_aggregate(torch.randn(2, 6, 4), torch.randn(2, 6, 3), 2, NeuralKNN(2)).shape
        torch.Size([2, 6, 2, 3])
    """
    kwargs = dict(
        temperature=temperature,
        candidates=candidates,
        mask=mask,
        exclude_self=exclude_self,
        logits_fn=logits_fn,
    )
    if impl == "reference":
        return set_aggregate_reference(embedding, values, k, weight_fn, **kwargs)
    if impl in ("auto", "fast"):
        return set_aggregate_fast(embedding, values, k, weight_fn, chunk_size=chunk_size, **kwargs)
    raise ValueError(f"impl must be 'auto', 'reference' or 'fast', got {impl!r}")
