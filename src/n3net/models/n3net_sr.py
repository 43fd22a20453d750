"""N3Net for super-resolution (paper §5.4): VDSR blocks interleaved with image N3 blocks.

Axis legend: ``B`` batch, ``C`` image channels, ``K`` neighbours, ``H, W`` image size.

The paper: 3 VDSR networks of depth 7 with an N3 block (k = 7, 10x10 patches at stride 5,
matched within an 80x80 region, i.e. a 15x15 patch grid) after each of the first two; one model
for ×2, ×3 and ×4, on the bicubic-upsampled luminance as VDSR. What the blocks output is not
stated there; n3net follows the denoising N3Net (§5.1) [derived]: the first two blocks write 8
channels, which each N3 block turns into ``8 * (7 + 1) = 64`` channels ``[Y, N_1 - Y, ...]``,
and the last writes the image. Every block adds its first ``min(in, out)`` input channels to its
output, so channel 0 carries the bicubic input through the whole chain: VDSR's global residual.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from n3net.blocks.n3_image import N3Block2d
from n3net.models._geometry import check_candidates, n3_reach
from n3net.models._registry import register_model
from n3net.models.dncnn import check_image, init_dncnn_
from n3net.models.n3net import run_chain
from n3net.models.vdsr import VDSRBlock
from n3net.ops.windows import Impl

__all__ = ["N3NetSR", "vdsr_chain"]


def vdsr_chain(
    channels: int, nl_channels: int, k: int, n_blocks: int, depth: int, features: int
) -> nn.ModuleList:
    """The ``n_blocks`` VDSR blocks of N3Net-SR (the layout of the denoising N3Net's chain).

    Block ``i`` reads ``channels`` (i = 0) or ``nl_channels * (k + 1)`` channels (the output of
    the N3 block before it) and writes ``nl_channels``, except the last, which writes
    ``channels``.
    """
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    blocks = nn.ModuleList()
    for i in range(n_blocks):
        c_in = channels if i == 0 else nl_channels * (k + 1)
        c_out = channels if i == n_blocks - 1 else nl_channels
        blocks.append(VDSRBlock(c_in, c_out, depth, features))
    return blocks


class N3NetSR(nn.Module):
    """N3Net-SR: ``n_blocks`` VDSR blocks with an N3 block after each but the last.

    ``blocks.0 -> n3.0 -> blocks.1 -> n3.1 -> blocks.2`` on the bicubic-upsampled luminance
    (see the module docstring for the channels and the residual). The N3 blocks are the
    denoising N3Net's (:class:`~n3net.blocks.n3_image.N3Block2d`: embedding and temperature
    CNNs, batch-normalised logits, ``[Y, N_j - Y]`` output); the chain runs as
    :func:`~n3net.models.n3net.run_chain`.

    Args:
        channels: image channels (1: the Y channel).
        k: neighbour volumes of each N3 block.
        patch_size, stride, search_window: N3 patch geometry (window in patch-grid cells).
        depth, features: conv layers and hidden channels of each VDSR block.
        n_blocks: VDSR blocks (``n_blocks - 1`` N3 blocks).
        nl_channels: channels each N3 block aggregates.
        embed_channels, embed_features, embed_depth: embedding / temperature CNNs.
        temperature_at: ``"mean"`` of the log-temperature over the patch or a flat patch-pixel
            index.
        temperature_scale: temperature = ``temperature_scale * exp(l)``.
        impl: window aggregation implementation (``"auto"``, ``"fast"``, ``"reference"``).

    Shape:
        x: (B, C, H, W) -> (B, C, H, W), the high-resolution size. The patch grid must offer at
        least ``k`` candidates (sides of 20 px or more with the defaults).

    Example:
        >>> import torch
        >>> model = N3NetSR(k=2, depth=3, features=8, embed_features=8, search_window=3)
        >>> model(torch.rand(1, 1, 24, 30)).shape
        torch.Size([1, 1, 24, 30])
    """

    def __init__(
        self,
        channels: int = 1,
        k: int = 7,
        patch_size: int = 10,
        stride: int = 5,
        search_window: int = 15,
        depth: int = 7,
        features: int = 64,
        n_blocks: int = 3,
        nl_channels: int = 8,
        embed_channels: int = 8,
        embed_features: int = 64,
        embed_depth: int = 3,
        temperature_at: Literal["mean"] | int = "mean",
        temperature_scale: float = 0.1,
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        self.arch = "n3net-sr"
        self.config = dict(
            channels=channels,
            k=k,
            patch_size=patch_size,
            stride=stride,
            search_window=search_window,
            depth=depth,
            features=features,
            n_blocks=n_blocks,
            nl_channels=nl_channels,
            embed_channels=embed_channels,
            embed_features=embed_features,
            embed_depth=embed_depth,
            temperature_at=temperature_at,
            temperature_scale=temperature_scale,
            impl=impl,
        )
        self.channels = channels
        self.blocks = vdsr_chain(channels, nl_channels, k, n_blocks, depth, features)
        self.n3 = nn.ModuleList(
            N3Block2d(
                nl_channels,
                k,
                patch_size,
                stride,
                search_window,
                embed_channels=embed_channels,
                embed_features=embed_features,
                embed_depth=embed_depth,
                temperature_scale=temperature_scale,
                temperature_at=temperature_at,
                logits_batchnorm=True,
                output="residual",
                impl=impl,
            )
            for _ in range(n_blocks - 1)
        )
        init_dncnn_(self)

    scale = 1

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that reach one output pixel (high-resolution pixels).

        One per convolution of the VDSR blocks, plus per N3 block its embedding CNN and the
        patches of its search window: ``3 * 7 + 2 * (3 + 7 * 5 + 9) = 115`` for the paper's.
        """
        c = self.config
        per_n3 = c["embed_depth"] + n3_reach(c["patch_size"], c["stride"], c["search_window"])
        return sum(b.receptive_radius for b in self.blocks) + len(self.n3) * per_n3

    @property
    def patch_grid(self) -> tuple[int, int]:
        """``(patch_size, stride)`` of the N3 blocks (tiles must sit on the image's grid)."""
        return self.config["patch_size"], self.config["stride"]

    @property
    def memory_per_pixel(self) -> int:
        """Bytes one input pixel costs in an inference pass; as the denoising N3Net's."""
        c = self.config
        return 2560 * max(1, c["nl_channels"] * (c["k"] + 1) // 64)

    def check_size(self, height: int, width: int) -> None:
        """Raise a one-line ValueError if the image offers fewer than ``k`` candidate patches."""
        c = self.config
        check_candidates(
            "n3net-sr", height, width, c["k"], c["patch_size"], c["stride"], c["search_window"]
        )

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.channels)
        return run_chain(self.blocks, self.n3, x)


@register_model("n3net-sr", task="sr")
def n3net_sr(**config: object) -> N3NetSR:
    """N3Net-SR (paper §5.4): 3 VDSR blocks of depth 7 and 2 N3 blocks with k = 7."""
    return N3NetSR(**config)
