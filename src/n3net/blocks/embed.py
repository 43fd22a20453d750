"""Small embedding and temperature networks of N3 blocks (paper §4, §5.1).

Axis legend: ``B`` batch, ``N`` items, ``C`` input channels, ``H, W`` image size.
"""

from __future__ import annotations

from torch import nn

__all__ = ["conv_embedding", "mlp_embedding"]


def conv_embedding(
    in_channels: int, out_channels: int, features: int = 64, depth: int = 3, batchnorm: bool = True
) -> nn.Sequential:
    """CNN ``f_E`` / ``f_T`` of the image N3 block: ``depth`` 3x3 convolutions.

    Hidden layers are conv (no bias when followed by batch norm), BN, ReLU; the last is a conv
    with bias. With the defaults the module indices are ``0, 1, 3, 4, 6`` for the convs and batch
    norms, the layout of the authors' ``embedcnn`` / ``tempcnn``.

    Shape:
        (B, C, H, W) -> (B, out_channels, H, W).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    c = in_channels
    for _ in range(depth - 1):
        layers.append(nn.Conv2d(c, features, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(features))
        layers.append(nn.ReLU(inplace=True))
        c = features
    layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


def mlp_embedding(
    in_channels: int, out_channels: int, features: int = 64, depth: int = 3, batchnorm: bool = False
) -> nn.Sequential:
    """MLP ``f_E`` / ``f_T`` of the set N3 block, applied to every item independently.

    Hidden layers are Linear, optional BatchNorm over the channels, ReLU; the last is Linear.

    Shape:
        (B, N, C) -> (B, N, out_channels).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    c = in_channels
    for _ in range(depth - 1):
        layers.append(nn.Linear(c, features, bias=not batchnorm))
        if batchnorm:
            layers.append(_ItemBatchNorm(features))
        layers.append(nn.ReLU(inplace=True))
        c = features
    layers.append(nn.Linear(c, out_channels))
    return nn.Sequential(*layers)


class _ItemBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of (B, N, C) tensors (statistics over B and N)."""

    def forward(self, x):  # type: ignore[override]
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)
