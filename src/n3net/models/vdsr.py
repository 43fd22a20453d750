"""VDSR (Kim et al. 2016): the paper's super-resolution baseline and N3Net-SR's sub-network (§5.4).

Axis legend: ``B`` batch, ``C`` channels, ``H, W`` image size.

A super-resolution network of n3net (task ``"sr"``) reads the *bicubic-upsampled* luminance
(Y of YCbCr) and returns the restored luminance at the same size, so one network serves every
scale (×2, ×3, ×4): :class:`n3net.inference.Upscaler` does the bicubic upscaling and the colour.
VDSR is a plain CNN: conv + ReLU, ``depth - 2`` x (conv + ReLU), conv, without batch norm, and
a global residual, ``out = x + body(x)``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from n3net.models._registry import register_model
from n3net.models.dncnn import DnCNNBlock, check_image, init_dncnn_

__all__ = ["VDSR", "VDSRBlock"]


class VDSRBlock(DnCNNBlock):
    """A VDSR body of ``depth`` 3x3 conv layers (all with bias, no batch norm).

    ``conv1`` + ReLU, ``depth - 2`` times [conv, ReLU] in the Sequential ``layer1`` (indices
    ``0, 1, 2, 3, ...``), ``conv2``. The residual is :class:`~n3net.models.dncnn.DnCNNBlock`'s:
    the first ``min(in_channels, out_channels)`` input channels are added to the output's.

    Args:
        in_channels, out_channels: channels of input and output.
        depth: number of conv layers (>= 2).
        features: channels of the hidden layers.
        residual: add the input as described above.

    Shape:
        x: (B, in_channels, H, W) -> (B, out_channels, H, W).

    Example:
        >>> import torch
        >>> VDSRBlock(1, 8, depth=4, features=16)(torch.randn(2, 1, 9, 7)).shape
        torch.Size([2, 8, 9, 7])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 20,
        features: int = 64,
        residual: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, depth, features, residual)
        layers: list[nn.Module] = []
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        self.layer1 = nn.Sequential(*layers)  # replaces DnCNN's (conv, BN, ReLU) layers

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that reach one output pixel: one per 3x3 convolution."""
        return 2 + len(self.layer1) // 2


class VDSR(VDSRBlock):
    """VDSR: 20 conv layers of 64 features on the bicubic-upsampled luminance, global residual.

    Args:
        channels: image channels (1: the Y channel).
        depth: conv layers (VDSR: 20).
        features: hidden channels (VDSR: 64).
        init: ``"he"`` (VDSR's own: He fan-in normal weights, zero biases) or ``"residual"``
            (the same with the last convolution at zero, so the network starts as the identity
            on its bicubic input, as N3Net-SR's blocks do).

    Shape:
        x: (B, channels, H, W) -> (B, channels, H, W); H, W the high-resolution size.

    Example:
        >>> import torch
        >>> VDSR(depth=4, features=8)(torch.rand(1, 1, 12, 10)).shape
        torch.Size([1, 1, 12, 10])
    """

    def __init__(
        self,
        channels: int = 1,
        depth: int = 20,
        features: int = 64,
        init: Literal["he", "residual"] = "he",
    ) -> None:
        super().__init__(channels, channels, depth, features, residual=True)
        if init not in ("he", "residual"):
            raise ValueError(f"init must be 'he' or 'residual', got {init!r}")
        self.arch = "vdsr"
        self.config = dict(channels=channels, depth=depth, features=features)
        if init != "he":
            self.config["init"] = init
        init_dncnn_(self)  # He et al. normal init, zero biases, as VDSR
        if init == "residual":
            nn.init.zeros_(self.conv2.weight)

    # Geometry read by n3net.inference (tiles, memory budget), in high-resolution pixels.
    patch_grid = None
    scale = 1

    @property
    def memory_per_pixel(self) -> int:
        """Bytes one input pixel costs in an inference pass: a few float32 feature maps."""
        return 24 * int(self.conv1.out_channels)

    def check_size(self, height: int, width: int) -> None:
        """Every non-empty image works (zero padding at the borders)."""

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.in_channels)
        return super().forward(x)


@register_model("vdsr", task="sr")
def vdsr(**config: object) -> VDSR:
    """VDSR (depth 20, 64 features) for ×2, ×3 and ×4 on the bicubic-upsampled Y channel."""
    return VDSR(**config)
