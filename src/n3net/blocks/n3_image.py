"""The image N3 block (paper §4): k continuous nearest-neighbour volumes of image patches.

Axis legend: ``B`` batch, ``C`` channels of the aggregated tensor ``Y``, ``E`` embedding
channels, ``K`` neighbours, ``H, W`` image size, ``n1 x n2`` patch grid.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n3net._memory import trim_cpu_heap
from n3net.blocks.embed import conv_embedding
from n3net.knn import NeuralKNN, temperature_from_log
from n3net.ops.patches import pad_for_patches, patch_padding
from n3net.ops.windows import Impl, window_aggregate

__all__ = ["LogitsBatchNorm", "N3Block2d", "patch_temperature"]

# Inference on images at least this large gives freed heap memory back to the OS afterwards.
_TRIM_PIXELS = 256 * 256


class LogitsBatchNorm(nn.BatchNorm1d):
    """One-channel batch norm over all valid (query, candidate) logits.

    Every valid pair counts as one sample, as in the authors' ``BatchNorm1d(1)`` on the
    flattened logits; masked pairs are left out of the statistics and returned unchanged.

    Shape:
        logits: (...,) any shape, mask: same shape (bool) or None -> same shape.
    """

    def __init__(self, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(1, eps=eps, momentum=momentum)

    def forward(self, logits: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if self.training:
            # Masked moments by sums (no boolean indexing: that would synchronise a GPU).
            if mask is None:
                n = torch.tensor(float(logits.numel()), device=logits.device)
                mean = logits.mean()
                var = logits.var(unbiased=False)
            else:
                # where(), not a product with the mask: masked logits may be -inf.
                n = mask.sum().to(logits.dtype)
                mean = torch.where(mask, logits, 0.0).sum() / n
                var = (torch.where(mask, logits, mean) - mean).square().sum() / n
            if logits.device.type == "cpu" and n < 2:
                raise ValueError("batch norm on logits needs at least 2 valid pairs in training")
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        else:
            mean, var = self.running_mean[0], self.running_var[0]
        scale = self.weight[0] / torch.sqrt(var + self.eps)
        out = (logits - mean) * scale + self.bias[0]
        return out if mask is None else torch.where(mask, out, logits)


def patch_temperature(
    log_temperature: Tensor, patch_size: int, stride: int, at: Literal["mean"] | int = "mean"
) -> Tensor:
    """Per-patch log-temperature from a per-pixel map on the padded image.

    ``at="mean"`` averages the patch's ``P`` values (padding zeros included, divisor ``P``; the
    authors' released denoisers); an int picks the patch pixel with that flat index (the paper's
    "center" reading uses ``patch_size * (patch_size // 2)``).

    Shape:
        log_temperature: (B, 1, H, W) padded -> (B, n1, n2).
    """
    if at == "mean":
        return F.avg_pool2d(log_temperature, patch_size, stride)[:, 0]
    if not isinstance(at, int) or not 0 <= at < patch_size * patch_size:
        raise ValueError(f"temperature_at must be 'mean' or in [0, {patch_size**2}), got {at!r}")
    r, c = divmod(at, patch_size)
    h, w = log_temperature.shape[-2:]
    n1, n2 = (h - patch_size) // stride + 1, (w - patch_size) // stride + 1
    return log_temperature[
        :, 0, r : r + (n1 - 1) * stride + 1 : stride, c : c + (n2 - 1) * stride + 1 : stride
    ]


class N3Block2d(nn.Module):
    """Neural nearest-neighbours block for images (paper §4, Fig. 2).

    An embedding CNN maps the input to ``E``; ``E`` is cut into overlapping patches; each patch
    (query) is matched, by squared Euclidean distance, to the other patches of its local search
    window; ``k`` rounds of the continuous KNN relaxation (Eqs. 8-11) with a per-query temperature
    from a temperature CNN weight the candidates; neighbour volume ``N_j`` averages the weighted
    candidate patches of the aggregated tensor ``Y`` back into an image. The output concatenates
    ``Y`` with the ``k`` volumes (``N_j - Y`` with ``output="residual"``, as the authors' models).

    Padding and borders follow the authors' released models: ``E``, ``Y`` and the log-temperature
    are zero-padded so that patches tile them exactly; the search window is shifted inward at the
    borders; grids smaller than the window use what exists. An image whose grid offers fewer
    than ``k`` candidates raises ``ValueError``.

    Args:
        in_channels: channels ``C`` of the input (and of ``Y``).
        k: number of neighbour volumes.
        patch_size, stride: patch geometry in pixels.
        search_window: side of the search window in patch-grid cells (15 = an 80x80 region).
        embed_channels, embed_features, embed_depth: the default embedding CNN.
        embedding: a custom embedding module ``(B, C, H, W) -> (B, E, H, W)``; ``nn.Identity()``
            matches on the input itself (the paper's plain KNN baselines).
        learn_temperature: predict a log-temperature map with a CNN shaped like the embedding.
        temperature: the fixed temperature when ``learn_temperature`` is False.
        temperature_scale: the learned temperature is ``temperature_scale * exp(l)``.
        temperature_at: ``"mean"`` over the patch, or a flat patch-pixel index.
        logits_batchnorm: batch-normalise the logits (authors' models) before the temperature.
        output: ``"residual"`` -> ``[Y, N_1 - Y, ...]``, ``"concat"`` -> ``[Y, N_1, ...]``.
        rule: ``"continuous"`` (default), ``"hard"``, ``"stochastic"`` or ``"concrete"``.
        mode: temperature placement of the continuous rule (``"code"`` or ``"paper"``).
        impl: ``"auto"``, ``"fast"`` or ``"reference"`` (see :mod:`n3net.ops.windows`).

    Shape:
        x: (B, C, H, W), values (optional): (B, C_Y, H, W) -> (B, C_Y * (K + 1), H, W).

    Example:
        >>> block = N3Block2d(8, k=2, search_window=3)
        >>> block(torch.randn(1, 8, 30, 30)).shape
        torch.Size([1, 24, 30, 30])
    """

    def __init__(
        self,
        in_channels: int,
        k: int = 7,
        patch_size: int = 10,
        stride: int = 5,
        search_window: int = 15,
        *,
        embed_channels: int = 8,
        embed_features: int = 64,
        embed_depth: int = 3,
        embedding: nn.Module | None = None,
        learn_temperature: bool = True,
        temperature: float = 1.0,
        temperature_scale: float = 0.1,
        temperature_at: Literal["mean"] | int = "mean",
        logits_batchnorm: bool = True,
        output: Literal["residual", "concat"] = "residual",
        rule: Literal["continuous", "hard", "stochastic", "concrete"] = "continuous",
        mode: Literal["code", "paper"] = "code",
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("k", k),
            ("patch_size", patch_size),
            ("stride", stride),
            ("search_window", search_window),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if stride > patch_size:
            raise ValueError(f"stride must be <= patch_size, got {stride} > {patch_size}")
        if output not in ("residual", "concat"):
            raise ValueError(f"output must be 'residual' or 'concat', got {output!r}")
        if not learn_temperature and not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.in_channels, self.k = in_channels, k
        self.patch_size, self.stride, self.search_window = patch_size, stride, search_window
        self.temperature_at, self.temperature_scale = temperature_at, temperature_scale
        self.fixed_temperature = temperature
        self.output, self.impl = output, impl
        self.embedding = (
            embedding
            if embedding is not None
            else conv_embedding(in_channels, embed_channels, embed_features, embed_depth)
        )
        self.temperature_net = (
            conv_embedding(in_channels, 1, embed_features, embed_depth)
            if learn_temperature
            else None
        )
        # Our own CNNs may run channels-last on the CPU (see _small_cnns); a custom module may not.
        self._own_embedding = embedding is None
        self.logits_bn = LogitsBatchNorm() if logits_batchnorm else None
        # The block builds masks and temperatures itself: no per-call value checks needed.
        self.knn = NeuralKNN(k, rule=rule, mode=mode, validate=False)

    def _small_cnns(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Embedding ``E`` and log-temperature map; on a CPU our own CNNs run channels-last.

        oneDNN's contiguous (NCHW) convolutions with few input or output channels (8 -> 64,
        64 -> 8, 64 -> 1 here) are 3-5x slower than channels-last ones on a CPU, so a contiguous
        input is converted once (8 channels: cheap) for both CNNs and their outputs converted
        back; the values are the same up to float rounding. On other devices, for a channels-last
        input, and for a custom embedding module, the CNNs see ``x`` as given.

        Shape:
            x: (B, C, H, W) -> (B, E, H, W) and (B, 1, H, W) or None, in the layout of ``x``.
        """
        convert = x.device.type == "cpu" and not x.is_contiguous(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last) if convert else x

        def run(net: nn.Module) -> Tensor:
            return net(x_cl).contiguous() if convert else net(x)

        emb = run(self.embedding) if self._own_embedding else self.embedding(x)
        log_t = run(self.temperature_net) if self.temperature_net is not None else None
        return emb, log_t

    def neighbours(self, x: Tensor, values: Tensor | None = None) -> Tensor:
        """Compute the ``k`` neighbour volumes without concatenating.

        Shape:
            x: (B, C, H, W), values: (B, C_Y, H, W) -> (B, K, C_Y, H, W).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        y = x if values is None else values
        if y.dim() != 4 or y.shape[0] != x.shape[0] or y.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"values must be (B, C_Y, H, W) matching x {tuple(x.shape)}, got {tuple(y.shape)}"
            )
        p, s = self.patch_size, self.stride
        h, w = x.shape[-2:]
        emb, log_t = self._small_cnns(x)
        emb = pad_for_patches(emb, p, s)
        y_pad = pad_for_patches(y, p, s)
        if log_t is not None:
            log_t = pad_for_patches(log_t, p, s)
            temperature = temperature_from_log(
                patch_temperature(
                    log_t.to(torch.promote_types(log_t.dtype, torch.float32)),
                    p,
                    s,
                    self.temperature_at,
                ),
                self.temperature_scale,
            )
        else:
            temperature = (
                None
                if self.fixed_temperature == 1.0
                else torch.full(
                    (1,), self.fixed_temperature, dtype=emb.dtype, device=emb.device
                ).expand(x.shape[0], *(((n - p) // s + 1) for n in emb.shape[-2:]))
            )
        # Distances |a|^2 + |b|^2 - 2<a, b> cancel badly in half precision: under autocast the
        # matching and aggregation run in float32 (the embedding CNNs may still use bf16).
        dtype = torch.promote_types(y_pad.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            volumes = window_aggregate(
                emb.to(dtype),
                y_pad.to(dtype),
                self.k,
                lambda logits, t, mask: self.knn(logits, t, mask),
                patch_size=p,
                stride=s,
                search_window=self.search_window,
                temperature=None if temperature is None else temperature.to(dtype),
                logits_fn=self.logits_bn,
                impl=self.impl,
            )
        top, _ = patch_padding(h, p, s)
        left, _ = patch_padding(w, p, s)
        return volumes[..., top : top + h, left : left + w]

    def forward(self, x: Tensor, values: Tensor | None = None) -> Tensor:
        y = x if values is None else values
        volumes = self.neighbours(x, values)  # (B, K, C_Y, H, W)
        if not torch.is_grad_enabled():
            # Inference: write straight into the output, no temporary volume-sized copies.
            b, k, c, h, w = volumes.shape
            out = y.new_empty(b, c * (k + 1), h, w)
            out[:, :c] = y
            rest = out[:, c:].view(b, k, c, h, w)
            rest.copy_(volumes)
            if self.output == "residual":
                rest.sub_(y[:, None])
            del volumes, rest
            if out.device.type == "cpu" and h * w >= _TRIM_PIXELS:
                trim_cpu_heap()
            return out
        if self.output == "residual":
            volumes = volumes - y[:, None]
        return torch.cat([y, volumes.flatten(1, 2)], dim=1)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, k={self.k}, patch_size={self.patch_size}, "
            f"stride={self.stride}, search_window={self.search_window}, output={self.output!r}"
        )
