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

from torch import nn

from n3net.models._chain import PatchChain, init_n3_authors_
from n3net.models._registry import register_model
from n3net.models.dncnn import init_dncnn_
from n3net.models.vdsr import VDSRBlock
from n3net.ops.windows import Impl

__all__ = ["N3NetSR"]


class N3NetSR(PatchChain):
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
        init: ``"residual"`` (default: He fan-in normal weights and zero biases as VDSR, but
            each VDSR block's last convolution starts at zero, so the network starts as the
            identity on its input, and the N3 blocks start as the authors'
            (:func:`~n3net.models._chain.init_n3_authors_`); ahead at every step-matched
            validation of two seeds, docs/super-resolution.md) or ``"he"`` (He everywhere: the
            untrained network's output is ~700x as far from the target as its bicubic input).
            The denoising N3Net's ``"authors"`` rule does not carry over: without batch norm,
            its fan-out He weights start 27,000x the bicubic error away.

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
        init: Literal["he", "residual"] = "residual",
    ) -> None:
        super().__init__()
        if init not in ("he", "residual"):
            raise ValueError(f"init must be 'he' or 'residual', got {init!r}")
        self.arch = "n3net-sr"
        config = dict(
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
        self._build_chain(VDSRBlock, config)
        if init != "residual":
            self.config["init"] = init
        init_dncnn_(self)  # VDSR's He (fan-in) init everywhere, N3 blocks included
        if init == "residual":
            for block in self.blocks:
                nn.init.zeros_(block.conv2.weight)  # each block starts as its residual
            init_n3_authors_(self)


@register_model("n3net-sr", task="sr")
def n3net_sr(**config: object) -> N3NetSR:
    """N3Net-SR (paper §5.4): 3 VDSR blocks of depth 7 and 2 N3 blocks with k = 7."""
    return N3NetSR(**config)
