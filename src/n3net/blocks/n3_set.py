"""The N3 block for sets and sequences (paper §4, §5.5): k continuous nearest-neighbour volumes.

Axis legend: ``B`` batch, ``N`` items (every item is a query), ``M`` candidates per query, ``K``
neighbours (the paper's k), ``C`` input channels, ``E`` embedding channels.

The block embeds the items and delegates matching and aggregation to
:func:`n3net.ops.sets.set_aggregate` (candidate modes, reference and fast paths: see there).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from n3net.blocks.embed import mlp_embedding
from n3net.blocks.n3_image import LogitsBatchNorm
from n3net.knn import NeuralKNN, temperature_from_log
from n3net.ops.sets import (
    _check_chunk_size,
    sequence_candidates,
    set_aggregate,
    set_aggregate_fast,
    set_aggregate_reference,
)
from n3net.ops.windows import Impl

__all__ = [
    "N3Block",
    "sequence_candidates",
    "set_aggregate",
    "set_aggregate_fast",
    "set_aggregate_reference",
]


class N3Block(nn.Module):
    """Neural nearest-neighbours block for sets and sequences (paper §4, §5.5).

    An MLP ``f_E`` embeds every item; each item (query) is matched, by squared Euclidean
    distance between embeddings, to its candidates (all other items by default); ``k`` rounds of
    the continuous KNN relaxation (Eqs. 8-11) with a per-item temperature from an MLP ``f_T``
    weight the candidates; neighbour volume ``N_j`` is the weighted sum of the candidates' ``Y``.
    The output concatenates ``Y`` with the ``k`` volumes along the channels (``N_j - Y`` with
    ``output="residual"``, the authors' form). The correspondence network of §5.5 uses
    ``k=3`` with all items as candidates.

    Args:
        in_channels: channels ``C`` of the input (and of ``Y``).
        k: number of neighbour volumes.
        embed_channels, embed_features, embed_depth: the default embedding MLP
            (``embed_depth`` linear layers); the temperature MLP has the same shape, 1 output.
        embedding: a custom embedding module ``(B, N, C) -> (B, N, E)``; ``nn.Identity()``
            matches on the input itself.
        learn_temperature: predict a log-temperature ``l`` per item with the temperature MLP.
        temperature: the fixed temperature when ``learn_temperature`` is False.
        temperature_scale: the learned temperature is ``temperature_scale * exp(l)``.
        logits_batchnorm: batch-normalise the logits over all valid pairs before the rule.
        output: ``"concat"`` -> ``[Y, N_1, ...]``, ``"residual"`` -> ``[Y, N_1 - Y, ...]``.
        rule: ``"continuous"`` (default), ``"hard"``, ``"stochastic"`` or ``"concrete"``.
        mode: temperature placement of the continuous rule (``"code"`` or ``"paper"``).
        exclude_self: an item is never its own candidate (also with a mask or indices).
        chunk_size: queries per chunk of the fast path; None picks it automatically.
        impl: ``"auto"``, ``"fast"`` or ``"reference"`` (see :func:`set_aggregate`).

    Shape:
        x: (B, N, C), values (optional): (B, N, C_Y), candidates (optional): (B, N, M) or (N, M),
        mask (optional): (B, N, N) / (N, N), or (B, N, M) / (N, M) with candidates
        -> (B, N, C_Y * (K + 1)).

    Example:
        >>> block = N3Block(16, k=3)
        >>> block(torch.randn(2, 10, 16)).shape
        torch.Size([2, 10, 64])
    """

    def __init__(
        self,
        in_channels: int,
        k: int = 7,
        *,
        embed_channels: int = 8,
        embed_features: int = 64,
        embed_depth: int = 3,
        embedding: nn.Module | None = None,
        learn_temperature: bool = True,
        temperature: float = 1.0,
        temperature_scale: float = 0.1,
        logits_batchnorm: bool = False,
        output: Literal["residual", "concat"] = "concat",
        rule: Literal["continuous", "hard", "stochastic", "concrete"] = "continuous",
        mode: Literal["code", "paper"] = "code",
        exclude_self: bool = True,
        chunk_size: int | None = None,
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("k", k)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if output not in ("residual", "concat"):
            raise ValueError(f"output must be 'residual' or 'concat', got {output!r}")
        if impl not in ("auto", "reference", "fast"):
            raise ValueError(f"impl must be 'auto', 'reference' or 'fast', got {impl!r}")
        if not learn_temperature and not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        _check_chunk_size(chunk_size)
        self.in_channels, self.k = in_channels, k
        self.fixed_temperature, self.temperature_scale = temperature, temperature_scale
        self.output, self.exclude_self = output, exclude_self
        self.chunk_size, self.impl = chunk_size, impl
        self.embedding = (
            embedding
            if embedding is not None
            else mlp_embedding(in_channels, embed_channels, embed_features, embed_depth)
        )
        self.temperature_net = (
            mlp_embedding(in_channels, 1, embed_features, embed_depth)
            if learn_temperature
            else None
        )
        self.logits_bn = LogitsBatchNorm() if logits_batchnorm else None
        analytic = rule == "continuous" and mode == "code"  # hand-written backward (large M)
        backward = "analytic" if analytic else "autograd"
        self.knn = NeuralKNN(k, rule=rule, mode=mode, backward=backward)

    def neighbours(
        self,
        x: Tensor,
        candidates: Tensor | None = None,
        mask: Tensor | None = None,
        values: Tensor | None = None,
    ) -> Tensor:
        """Compute the ``k`` neighbour volumes without concatenating.

        Shape:
            x: (B, N, C), values: (B, N, C_Y) -> (B, N, K, C_Y).
        """
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, N, {self.in_channels}), got {got}")
        y = x if values is None else values
        if self.temperature_net is not None:
            log_t = self.temperature_net(x)[..., 0]  # (B, N)
            temperature: Tensor | float | None = temperature_from_log(log_t, self.temperature_scale)
        else:
            temperature = None if self.fixed_temperature == 1.0 else self.fixed_temperature
        return set_aggregate(
            self.embedding(x),
            y,
            self.k,
            self.knn,
            temperature=temperature,
            candidates=candidates,
            mask=mask,
            exclude_self=self.exclude_self,
            logits_fn=self.logits_bn,
            chunk_size=self.chunk_size,
            impl=self.impl,
        )

    def forward(
        self,
        x: Tensor,
        candidates: Tensor | None = None,
        mask: Tensor | None = None,
        values: Tensor | None = None,
    ) -> Tensor:
        y = x if values is None else values
        volumes = self.neighbours(x, candidates, mask, values)  # (B, N, K, C_Y)
        if self.output == "residual":
            volumes = volumes - y[:, :, None, :]
        return torch.cat([y, volumes.flatten(2)], dim=-1)  # (B, N, C_Y * (K + 1))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, k={self.k}, output={self.output!r}, "
            f"exclude_self={self.exclude_self}, impl={self.impl!r}"
        )
