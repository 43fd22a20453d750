"""DnCNN (Zhang et al. 2017): the paper's denoising baseline and N3Net's sub-network (§5.1).

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.

Residual convention: the network body predicts the *negative* noise and the input is added,
``out = x + body(x)`` (equivalent to DnCNN's ``x - noise(x)`` with the last convolution's sign
flipped). This is the authors' N3Net sub-network convention, so one class serves both.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from n3net.models._registry import register_model

__all__ = ["DnCNN", "DnCNNBlock", "check_image", "init_dncnn_", "init_near_identity_"]


def check_image(x: Tensor, channels: int) -> None:
    """Raise a one-line ValueError unless ``x`` is a (B, channels, H, W) tensor."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"input must be (B, {channels}, H, W), got {shape}")


def init_dncnn_(module: nn.Module, method: Literal["kaiming", "orthogonal"] = "kaiming") -> None:
    """Initialise every conv / linear / batch-norm layer of ``module`` in place, DnCNN style.

    ``"kaiming"`` (default): He et al. normal init (fan-in, ReLU gain), the method the DnCNN paper
    cites; ``"orthogonal"``: orthogonal weights with ReLU gain, as some DnCNN reimplementations
    use. Biases start at 0, batch-norm scales at 1 and shifts at 0.
    """
    if method not in ("kaiming", "orthogonal"):
        raise ValueError(f"method must be 'kaiming' or 'orthogonal', got {method!r}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            if method == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.orthogonal_(m.weight, gain=nn.init.calculate_gain("relu"))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_near_identity_(module: nn.Module, features: int) -> None:
    """Initialise ``module``'s convolutions and batch norms as DnCNN's own training code does.

    Conv weights He-normal over the fan-out, biases 0, batch-norm scales
    ``max(|N(0, 2 / (9 * features))|, 0.025)`` and shifts 0: the batch-normalised layers start
    small (the N3Net authors initialise their DnCNN blocks the same way, which starts their
    N3Net near the identity; an untrained DnCNN-17 starts at half the error of He fan-in init).
    """
    std = (2.0 / (9 * features)) ** 0.5
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.normal_(0.0, std).abs_().clamp_(min=0.025)
            nn.init.zeros_(m.bias)


class DnCNNBlock(nn.Module):
    """DnCNN body of ``depth`` 3x3 conv layers with a partial residual connection.

    ``conv1`` (bias) + ReLU, then ``depth - 2`` times [conv (no bias), BatchNorm, ReLU] in the
    Sequential ``layer1`` (indices ``0, 1, (2), 3, 4, ...``), then ``conv2`` (bias). With
    ``residual``, the first ``r = min(in_channels, out_channels)`` input channels are added to the
    first ``r`` output channels (the authors' N3Net sub-networks; a plain residual when the two
    channel counts agree).

    Args:
        in_channels, out_channels: channels of input and output.
        depth: number of conv layers (>= 2).
        features: channels of the hidden layers.
        residual: add the input as described above.

    Shape:
        x: (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 6,
        features: int = 64,
        residual: bool = True,
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("features", features),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer >= 2, got {depth!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, features, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        layers: list[nn.Module] = []
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(features, features, 3, padding=1, bias=False),
                nn.BatchNorm2d(features),
                nn.ReLU(inplace=True),
            ]
        self.layer1 = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(features, out_channels, 3, padding=1)

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that reach one output pixel: one per 3x3 convolution."""
        return 2 + len(self.layer1) // 3

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.layer1(self.relu(self.conv1(x))))
        return self._add_residual(out, x if self.residual else None)

    def _add_residual(self, out: Tensor, x: Tensor | None) -> Tensor:
        if x is None:
            return out
        r = min(self.in_channels, self.out_channels)
        if r == self.out_channels:
            return out + x[:, :r]
        return torch.cat([out[:, :r] + x[:, :r], out[:, r:]], dim=1)

    def forward_consume(self, holder: list[Tensor]) -> Tensor:
        """Inference forward that takes its input out of ``holder`` and frees it early.

        Only the ``min(in, out)`` residual channels are kept after ``conv1``, so a wide input
        (an N3 block's ``C * (K + 1)`` channels) is released before the remaining layers run
        (same result as :meth:`forward`, less peak memory; module hooks are not called).
        """
        x = holder.pop()
        h = self.relu(self.conv1(x))
        res = x[:, : min(self.in_channels, self.out_channels)].clone() if self.residual else None
        del x
        return self._add_residual(self.conv2(self.layer1(h)), res)


class DnCNN(DnCNNBlock):
    """The DnCNN denoiser: conv+ReLU, ``depth - 2`` x (conv, BN, ReLU), conv; global residual.

    ``out = x + body(x)``: the body predicts the negative noise (see the module docstring).
    The paper's baselines are ``depth=17`` (556k parameters) and ``depth=18``.

    Args:
        channels: image channels (1 grey, 3 colour).
        depth: conv layers.
        features: hidden channels.
        out_channels: output channels (default ``channels``).
        residual: add the input to the output.
        init: ``"authors"`` (default; :func:`init_near_identity_`: DnCNN's own training code's
            rule, which the N3Net authors use for their DnCNN blocks too; ahead of He fan-in at
            every step-matched validation of a two-seed A/B, docs/training/recipe.md) or
            ``"kaiming"`` (:func:`init_dncnn_`: He fan-in, batch-norm scales 1).

    Shape:
        x: (B, channels, H, W) -> (B, out_channels, H, W).

    Example:
        >>> DnCNN(depth=5)(torch.randn(2, 1, 12, 9)).shape
        torch.Size([2, 1, 12, 9])
    """

    def __init__(
        self,
        channels: int = 1,
        depth: int = 17,
        features: int = 64,
        out_channels: int | None = None,
        residual: bool = True,
        init: Literal["authors", "kaiming"] = "authors",
    ) -> None:
        if init not in ("kaiming", "authors"):
            raise ValueError(f"init must be 'kaiming' or 'authors', got {init!r}")
        out = channels if out_channels is None else out_channels
        super().__init__(channels, out, depth, features, residual)
        self.arch = "dncnn"
        self.config = dict(
            channels=channels,
            depth=depth,
            features=features,
            out_channels=out_channels,
            residual=residual,
        )
        if init == "authors":
            init_near_identity_(self, features)
        else:
            self.config["init"] = init
            init_dncnn_(self)

    # Geometry read by n3net.inference (tiles, memory budget).
    patch_grid = None
    scale = 1

    @property
    def memory_per_pixel(self) -> int:
        """Bytes one input pixel costs in an inference forward pass (measured on the CPU).

        Four to six float32 maps of ``features`` channels are alive at once: DnCNN-17 peaks
        at ~0.8 kB per pixel above its idle process, ~1.5 kB at 1024x1024 when freed memory is
        kept for reuse as the command line does on the CPU (``benchmarks/peak_memory.py``).
        """
        return 24 * int(self.conv1.out_channels)

    def check_size(self, height: int, width: int) -> None:
        """Every non-empty image works (zero padding at the borders)."""

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.in_channels)
        return super().forward(x)


@register_model("dncnn")
def dncnn(**config: object) -> DnCNN:
    """DnCNN (default depth 17); ``depth=18`` is the paper's deeper baseline."""
    return DnCNN(**config)
