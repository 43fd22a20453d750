"""CNNet (Yi et al., CVPR 2018) and CNNet + N3 block (paper §5.5): inlier logits of match sets.

Axis legend: ``B`` batch (image pairs), ``N`` correspondences per pair (the set), ``C``
channels, ``E`` embedding channels, ``K`` neighbours (the paper's k).

Every layer acts on each correspondence alone (a per-point linear layer, the original's 1x1
convolution) except the normalisations and the N3 block, which see the whole set of a pair.
Pairs of different ``N`` share a batch through a ``mask`` (B, N) of real rows: context norm,
batch norm (in training) and the N3 block's candidates use the real rows only, so a padded pair
gets the logits it gets alone (in eval mode, where batch norm uses its running statistics).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from n3net.knn import NeuralKNN
from n3net.models._registry import register_model
from n3net.ops.sets import set_aggregate

__all__ = [
    "CNNet",
    "ContextNorm",
    "MaskedBatchNorm",
    "SetN3Layer",
    "context_norm",
    "context_norm_reference",
]

Init = Literal["authors", "torch"]
Temperature = Literal["linear", "exp"]


def _check_input(xs: Tensor, mask: Tensor | None, channels: int) -> None:
    if not isinstance(xs, Tensor) or xs.dim() != 3 or xs.shape[-1] != channels:
        got = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
        raise ValueError(f"xs must be (B, N, {channels}), got {got}")
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(xs.shape[:2])):
        raise ValueError(
            f"mask must be a bool tensor (B, N) = {tuple(xs.shape[:2])}, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )


def _masked_moments(x: Tensor, weight: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over ``dims`` of the rows with ``weight`` 1."""
    count = weight.sum(dims, keepdim=True).clamp_min(1)
    mean = (x * weight).sum(dims, keepdim=True) / count
    var = (((x - mean) * weight) ** 2).sum(dims, keepdim=True) / count
    return mean, var


def context_norm(x: Tensor, mask: Tensor | None = None, eps: float = 1e-3) -> Tensor:
    """Context normalisation: ``(x - mean) / sqrt(var + eps)`` per pair and channel over the set.

    The biased variance over the pair's (real) correspondences, no affine; padding gives 0.

    Shape:
        x: (B, N, C), mask: (B, N) -> (B, N, C).

    Example:
        >>> y = context_norm(torch.randn(2, 50, 3) * 4 + 1, eps=0.0)
        >>> y.mean(1).abs().max() < 1e-5, ((y.var(1, unbiased=False) - 1).abs().max() < 1e-4)
        (tensor(True), tensor(True))
    """
    if mask is None:
        return _ContextNorm.apply(x, eps)
    weight = mask[..., None].to(x.dtype)
    mean, var = _masked_moments(x, weight, (1,))
    return (x - mean) * torch.rsqrt(var + eps) * weight


def context_norm_reference(x: Tensor, eps: float = 1e-3) -> Tensor:
    """:func:`context_norm` without padding, as autograd differentiates the formula.

    Shape:
        x: (B, N, C) -> (B, N, C).
    """
    centred = x - x.mean(1, keepdim=True)
    return centred * torch.rsqrt(centred.square().mean(1, keepdim=True) + eps)


class _ContextNorm(torch.autograd.Function):
    """:func:`context_norm` without padding, with a hand-written backward.

    ``y = (x - mean) * r``, ``r = (var + eps)^(-1/2)``, mean and biased variance over the set
    axis; then ``dL/dx = r * (g - mean(g) - y * mean(g * y))`` (exact with ``eps``), so only
    ``y`` and ``r`` are kept and the backward is a few passes (autograd on the formula,
    :func:`context_norm_reference`, keeps more and takes several times the passes). Two-pass
    moments: on a CPU ``torch.var_mean`` over this non-innermost axis is several times slower.

    Shape:
        x: (B, N, C) -> (B, N, C).
    """

    @staticmethod
    def forward(ctx, x: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        centred = x - x.mean(1, keepdim=True)
        r = torch.rsqrt(centred.square().mean(1, keepdim=True) + eps)  # (B, 1, C)
        y = centred.mul_(r)
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        y, r = ctx.saved_tensors
        gy = (g * y).mean(1, keepdim=True)
        return torch.addcmul(g - g.mean(1, keepdim=True), y, gy, value=-1.0).mul_(r), None


class ContextNorm(nn.Module):
    """Module form of :func:`context_norm`."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return context_norm(x, mask, self.eps)


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm without affine over all real correspondences of the batch (channel-last).

    The original is TensorFlow's batch norm with ``center=False, scale=False``, momentum 0.99
    and eps 1e-3, i.e. PyTorch momentum 0.01. Training mode normalises with the statistics of the
    real rows and updates the running ones; eval mode uses the running statistics.

    Shape:
        x: (B, N, C), mask: (B, N) -> (B, N, C).
    """

    def __init__(self, channels: int, eps: float = 1e-3, momentum: float = 0.01) -> None:
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None:
            flat = x.reshape(-1, x.shape[-1])  # (B N, C): the fused kernel, same statistics
            return super().forward(flat).view_as(x)
        weight = mask[..., None].to(x.dtype)  # (B, N, 1)
        if self.training:
            mean, var = _masked_moments(x, weight, (0, 1))  # (1, 1, C)
            with torch.no_grad():
                count = weight.sum().clamp_min(2)
                unbiased = var.flatten() * count / (count - 1)
                self.running_mean.lerp_(mean.flatten().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        return out if mask is None else out * weight


class _ResidualBlock(nn.Module):
    """Yi et al.'s block: twice ``ReLU(BN(CN(linear(x))))``, plus the (linear) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_channels, out_channels)
        self.linear2 = nn.Linear(out_channels, out_channels)
        self.norm1, self.norm2 = ContextNorm(eps), ContextNorm(eps)
        self.bn1 = MaskedBatchNorm(out_channels, eps, momentum)
        self.bn2 = MaskedBatchNorm(out_channels, eps, momentum)
        self.shortcut = (
            nn.Linear(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        y = torch.relu(self.bn1(self.norm1(self.linear1(x), mask), mask))
        y = torch.relu(self.bn2(self.norm2(self.linear2(y), mask), mask))
        return y + self.shortcut(x)


class _PreActBlock(nn.Module):
    """Pre-activation residual block without normalisation: ``W2 ReLU(W1 ReLU(x)) + shortcut``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_channels, out_channels)
        self.linear2 = nn.Linear(out_channels, out_channels)
        self.shortcut = (
            nn.Linear(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(torch.relu(self.linear1(torch.relu(x)))) + self.shortcut(x)


def _preact_mlp(in_channels: int, features: int, out_channels: int) -> nn.Sequential:
    """The N3 block's ``f_E`` / ``f_T``: three pre-activation blocks C -> F -> F -> out."""
    return nn.Sequential(
        _PreActBlock(in_channels, features),
        _PreActBlock(features, features),
        _PreActBlock(features, out_channels),
    )


class SetN3Layer(nn.Module):
    """The correspondence network's N3 block: ``k`` neighbour volumes over all matches of a pair.

    As the authors' code: the embedding ``f_E`` and the temperature net ``f_T`` are three
    pre-activation residual blocks each (no normalisation; widths C -> 128 -> 128 -> E and
    C -> 128 -> 128 -> 1), one embedding shared by queries and candidates; ``f_T`` predicts a
    linear *inverse* temperature ``T_i``, so the logits are ``-|e_i - e_j|^2 * T_i`` (nothing
    keeps ``T_i`` positive; ``temperature="exp"`` instead takes ``T_i = scale * exp(f_T(x_i))``,
    positive and about ``scale`` at the start, not the paper's choice); every other match of the
    pair is a candidate (self excluded); the relaxed KNN (Eqs. 8-11) runs ``k`` rounds; the
    neighbour volumes aggregate the input ``x`` and are concatenated to it. (The original also
    clips each round's weights to [1.2e-7, 1 - 1.2e-7]; here the exact relaxation of
    :func:`n3net.knn.neural_knn` runs.)

    Args:
        channels: input channels ``C`` (32 in the paper's network).
        k: neighbour volumes.
        features: hidden width of ``f_E`` and ``f_T``.
        embed_channels: embedding channels ``E``.
        chunk_size: queries per chunk of :func:`n3net.ops.sets.set_aggregate`.
        temperature: ``"linear"`` (the authors' ``T_i = f_T(x_i)``) or ``"exp"``
            (``T_i = temperature_scale * exp(f_T(x_i))``).
        temperature_scale: the inverse temperature ``"exp"`` starts near (``f_T`` starts
            near 0); unused by ``"linear"``.

    Shape:
        x: (B, N, C), mask: (B, N) -> (B, N, C * (K + 1)).

    Example:
        >>> SetN3Layer(8, k=3, features=16, embed_channels=4)(torch.randn(2, 10, 8)).shape
        torch.Size([2, 10, 32])
    """

    def __init__(
        self,
        channels: int,
        k: int = 3,
        features: int = 128,
        embed_channels: int = 32,
        chunk_size: int | None = None,
        temperature: Temperature = "linear",
        temperature_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if temperature not in ("linear", "exp"):
            raise ValueError(f"temperature must be 'linear' or 'exp', got {temperature!r}")
        if not (temperature_scale > 0 and math.isfinite(temperature_scale)):
            raise ValueError(f"temperature_scale must be finite and > 0, got {temperature_scale!r}")
        self.channels, self.k, self.chunk_size = channels, k, chunk_size
        self.temperature_mode, self.temperature_scale = temperature, temperature_scale
        self.embedding = _preact_mlp(channels, features, embed_channels)
        self.temperature = _preact_mlp(channels, features, 1)
        # set_aggregate has checked the candidate counts; the rounds differentiate by hand.
        self.knn = NeuralKNN(k, validate=False, backward="analytic")

    def inverse_temperature(self, x: Tensor) -> Tensor:
        """The per-match inverse temperatures ``T_i``: (B, N, C) -> (B, N, 1)."""
        out = self.temperature(x)
        return out if self.temperature_mode == "linear" else self.temperature_scale * out.exp()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        inverse_temperature = self.inverse_temperature(x)  # (B, N, 1)
        pairs = None if mask is None else mask[:, None, :].expand(b, n, n)  # real candidates

        def scale(logits: Tensor, valid: Tensor | None) -> Tensor:
            return logits * inverse_temperature.to(logits.dtype)

        volumes = set_aggregate(
            self.embedding(x),
            x,
            self.k,
            self.knn,
            mask=pairs,
            exclude_self=True,
            logits_fn=scale,
            chunk_size=self.chunk_size,
        )  # (B, N, K, C)
        out = torch.cat([x, volumes.flatten(2)], -1)  # (B, N, C * (K + 1))
        return out if mask is None else out * mask[..., None].to(out.dtype)


class CNNet(nn.Module):
    """Context normalisation network (Yi et al. 2018), optionally with the paper's N3 block.

    A per-point linear layer 4 -> ``channels``, ``depth`` residual blocks (each twice
    linear, context norm, batch norm without affine, ReLU, plus the shortcut), and a linear layer
    to one logit per correspondence. With ``n3_block = 6`` (the paper's §5.5 network) block 6
    narrows to ``channels / (k + 1)`` channels and a :class:`SetN3Layer` follows it, whose
    concatenated output has ``channels`` channels again for blocks 7 onwards.

    Args:
        in_channels: values per correspondence (4: x1, y1, x2, y2 normalised).
        channels: width of the blocks (128).
        depth: residual blocks (12).
        n3_block: the block the N3 layer follows (1-based), None for plain CNNet.
        k: neighbour volumes of the N3 layer (3).
        embed_features, embed_channels: hidden width and output of ``f_E`` (128, 32).
        eps: epsilon of context and batch norm (1e-3, TensorFlow's default).
        bn_momentum: PyTorch momentum of batch norm (0.01, TensorFlow's 0.99).
        init: ``"authors"``: truncated normal weights with std ``2 / fan_in`` (the original's
            choice) and zero biases; ``"torch"``: PyTorch's default.
        chunk_size: queries per chunk of the N3 layer.
        temperature, temperature_scale: the N3 layer's inverse temperature
            (:class:`SetN3Layer`; ``"linear"``, the paper's, by default).

    Shape:
        xs: (B, N, in_channels), mask: (B, N) bool -> logits: (B, N), 0 on padding.

    Example:
        >>> model = CNNet(channels=16, depth=2).eval()
        >>> model(torch.randn(2, 30, 4)).shape
        torch.Size([2, 30])
    """

    def __init__(
        self,
        in_channels: int = 4,
        channels: int = 128,
        depth: int = 12,
        n3_block: int | None = None,
        k: int = 3,
        embed_features: int = 128,
        embed_channels: int = 32,
        eps: float = 1e-3,
        bn_momentum: float = 0.01,
        init: Init = "authors",
        chunk_size: int | None = None,
        temperature: Temperature = "linear",
        temperature_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if n3_block is not None and not 1 <= n3_block < depth:
            raise ValueError(f"n3_block must be in [1, depth) = [1, {depth}), got {n3_block}")
        if n3_block is not None and channels % (k + 1):
            raise ValueError(f"channels must be divisible by k + 1 = {k + 1}, got {channels}")
        if init not in ("authors", "torch"):
            raise ValueError(f"init must be 'authors' or 'torch', got {init!r}")
        self.in_channels, self.n3_block = in_channels, n3_block
        self.input = nn.Linear(in_channels, channels)
        blocks = []
        for index in range(1, depth + 1):
            narrow = index == n3_block
            out = channels // (k + 1) if narrow else channels
            blocks.append(_ResidualBlock(channels, out, eps, bn_momentum))
        self.blocks = nn.ModuleList(blocks)
        self.n3 = (
            SetN3Layer(
                channels // (k + 1),
                k,
                embed_features,
                embed_channels,
                chunk_size,
                temperature,
                temperature_scale,
            )
            if n3_block is not None
            else None
        )
        self.output = nn.Linear(channels, 1)
        if init == "authors":
            self.apply(_authors_init)

    def forward(self, xs: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_input(xs, mask, self.in_channels)
        if mask is not None and bool(mask.all()):
            mask = None  # no padding: the unmasked (fused) normalisations give the same result
        x = self.input(xs)  # (B, N, C)
        for index, block in enumerate(self.blocks, start=1):
            x = block(x, mask)
            if index == self.n3_block:
                x = self.n3(x, mask)  # (B, N, C / (K + 1)) -> (B, N, C)
        logits = self.output(x)[..., 0]  # (B, N)
        return logits if mask is None else logits.masked_fill(~mask, 0.0)


def _authors_init(module: nn.Module) -> None:
    """Truncated normal (at 2 std) with std = 2 / fan_in, zero bias (the original's init)."""
    if isinstance(module, nn.Linear):
        std = 2.0 / module.in_features
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(module.bias)


@register_model("cnnet", task="correspondences")
def cnnet(**config: object) -> CNNet:
    """CNNet: 12 residual blocks of width 128 (397,057 parameters)."""
    return CNNet(**config)  # type: ignore[arg-type]


@register_model("cnnet-n3", task="correspondences")
def cnnet_n3(**config: object) -> CNNet:
    """CNNet + N3 block after block 6, k = 3 (498,885 parameters)."""
    config = {"n3_block": 6, **config}
    return CNNet(**config)  # type: ignore[arg-type]
