"""N3Net for image denoising (paper §5.1): DnCNN blocks interleaved with image N3 blocks.

Axis legend: ``B`` batch, ``C`` image channels, ``K`` neighbours, ``H, W`` image size.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from n3net.blocks.n3_image import N3Block2d
from n3net.models._geometry import check_candidates, n3_reach
from n3net.models._registry import register_model
from n3net.models.dncnn import DnCNNBlock, check_image, init_dncnn_
from n3net.ops.windows import Impl

__all__ = ["N3NetDenoiser", "dncnn_chain", "run_chain"]


def dncnn_chain(
    channels: int, nl_channels: int, k: int, n_blocks: int, depth: int, features: int
) -> nn.ModuleList:
    """The ``n_blocks`` DnCNN blocks of an N3Net-shaped network.

    Block ``i`` reads ``channels`` (i = 0) or ``nl_channels * (k + 1)`` channels (the output of
    the N3 block before it) and writes ``nl_channels``, except the last, which writes
    ``channels``. Each adds its first ``min(in, out)`` input channels to its output.
    """
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    blocks = nn.ModuleList()
    for i in range(n_blocks):
        c_in = channels if i == 0 else nl_channels * (k + 1)
        c_out = channels if i == n_blocks - 1 else nl_channels
        blocks.append(DnCNNBlock(c_in, c_out, depth, features))
    return blocks


def run_chain(
    blocks: nn.ModuleList, n3: nn.ModuleList, x: Tensor, guide: Tensor | None = None
) -> Tensor:
    """``blocks[0] -> n3[0] -> blocks[1] -> ... -> blocks[-1]``.

    With ``guide``, every N3 block matches patches of ``guide`` and aggregates the features.
    """
    y = x
    for i, block in enumerate(blocks):
        if i == 0 or torch.is_grad_enabled():
            y = block(y)
        else:  # inference: let the block free the wide N3 output early
            holder = [y]
            del y
            y = block.forward_consume(holder)
        if i < len(n3):
            y = n3[i](y) if guide is None else n3[i](guide, values=y)
    return y


def init_authors_(model: nn.Module, features: int) -> None:
    """Initialise an N3Net near the identity, as the authors' training code does.

    DnCNN blocks: conv weights He-normal over the fan-out, biases 0, batch-norm scales
    ``max(|N(0, 2 / (9 * features))|, 0.025)`` (DnCNN's own rule) and shifts 0, so each block
    starts close to its residual input. N3 blocks: embedding and temperature CNNs at PyTorch's
    default init, the logits batch-norm scale drawn from U(0, 1).
    """
    std = (2.0 / (9 * features)) ** 0.5
    for block in model.blocks:
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.normal_(0.0, std).abs_().clamp_(min=0.025)
                nn.init.zeros_(m.bias)
    for n3 in model.n3:
        for m in n3.modules():
            if isinstance(m, nn.Conv2d | nn.BatchNorm2d):
                m.reset_parameters()
        if n3.logits_bn is not None:
            nn.init.uniform_(n3.logits_bn.weight, 0.0, 1.0)
            nn.init.zeros_(n3.logits_bn.bias)


class N3NetDenoiser(nn.Module):
    """N3Net denoiser: ``n_blocks`` DnCNN blocks with an N3 block after each but the last.

    The paper's network (``n_blocks=3``) is ``blocks.0 -> n3.0 -> blocks.1 -> n3.1 ->
    blocks.2``: DnCNN blocks of depth 6, the first two writing 8 channels, each N3 block
    (k = 7, 10x10 patches at stride 5, 15x15 search window) turning them into
    ``8 * (7 + 1) = 64`` channels ``[Y, N_1 - Y, ..., N_7 - Y]``. There is no skip around the
    whole network: the last block adds channel ``0..C-1`` of its input (the features the first
    block initialised with the noisy image) to its output, as the authors' models do. With the
    defaults this is exactly the authors' released denoiser (705.5k parameters); ``n_blocks=2``
    is N3Net light (427k).

    Args:
        channels: image channels.
        k: neighbour volumes of each N3 block.
        patch_size, stride, search_window: N3 patch geometry (window in patch-grid cells).
        depth, features: conv layers and hidden channels of each DnCNN block.
        n_blocks: DnCNN blocks (``n_blocks - 1`` N3 blocks).
        nl_channels: channels each N3 block aggregates.
        embed_channels, embed_features, embed_depth: embedding / temperature CNNs.
        temperature_at: ``"mean"`` of the log-temperature over the patch (authors' models) or a
            flat patch-pixel index.
        temperature_scale: temperature = ``temperature_scale * exp(l)``.
        rule: neighbour rule, ``"continuous"`` (N3), ``"concrete"`` (baseline (v)), ...
        impl: window aggregation implementation (``"auto"``, ``"fast"``, ``"reference"``).
        init: ``"authors"`` (:func:`init_authors_`: the network starts near the identity,
            and its N3 blocks learn from the first steps) or ``"dncnn"`` (He fan-in
            everywhere, batch-norm scales 1: a training loss ~300 x the noisy input's at the
            start, and N3 parameters that Adam leaves nearly frozen for thousands of steps).

    Shape:
        x: (B, C, H, W) -> (B, C, H, W). The patch grid must offer at least ``k`` candidates
        (sides of 20 px or more with the defaults).

    Example:
        >>> import torch
        >>> model = N3NetDenoiser(k=2, depth=3, features=8, embed_features=8, search_window=3)
        >>> model(torch.randn(1, 1, 24, 24)).shape
        torch.Size([1, 1, 24, 24])
    """

    def __init__(
        self,
        channels: int = 1,
        k: int = 7,
        patch_size: int = 10,
        stride: int = 5,
        search_window: int = 15,
        depth: int = 6,
        features: int = 64,
        n_blocks: int = 3,
        nl_channels: int = 8,
        embed_channels: int = 8,
        embed_features: int = 64,
        embed_depth: int = 3,
        temperature_at: Literal["mean"] | int = "mean",
        temperature_scale: float = 0.1,
        rule: Literal["continuous", "hard", "stochastic", "concrete"] = "continuous",
        impl: Impl = "auto",
        init: Literal["authors", "dncnn"] = "authors",
    ) -> None:
        super().__init__()
        if init not in ("dncnn", "authors"):
            raise ValueError(f"init must be 'dncnn' or 'authors', got {init!r}")
        self.arch = "n3net"
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
            rule=rule,
            impl=impl,
        )
        if init != "authors":
            self.config["init"] = init
        self.channels = channels
        self.blocks = dncnn_chain(channels, nl_channels, k, n_blocks, depth, features)
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
                rule=rule,
                impl=impl,
            )
            for _ in range(n_blocks - 1)
        )
        if init == "dncnn":
            init_dncnn_(self)
        else:
            init_authors_(self, features)

    scale = 1

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that reach one output pixel.

        The DnCNN blocks reach one pixel per convolution; each N3 block adds its embedding CNN
        and the patches of its search window (:func:`~n3net.models._geometry.n3_reach`). The
        paper's N3Net: ``3 * 6 + 2 * (3 + 7 * 5 + 9) = 112``.
        """
        c = self.config
        per_n3 = c["embed_depth"] + n3_reach(c["patch_size"], c["stride"], c["search_window"])
        return sum(b.receptive_radius for b in self.blocks) + len(self.n3) * per_n3

    @property
    def patch_grid(self) -> tuple[int, int]:
        """``(patch_size, stride)`` of the N3 blocks: their patch grid is anchored to the input's
        border, so tiles must sit on the whole image's grid (see :mod:`n3net.inference.tiling`).
        """
        return self.config["patch_size"], self.config["stride"]

    @property
    def memory_per_pixel(self) -> int:
        """Bytes one input pixel costs in an inference forward pass (measured on the CPU).

        The paper's N3Net peaks at ~2.5 kB per pixel at 1024x1024 with the command line's memory
        policy (``benchmarks/peak_memory.py``); it scales with the N3 output's channels.
        """
        c = self.config
        return 2560 * max(1, c["nl_channels"] * (c["k"] + 1) // 64)

    def check_size(self, height: int, width: int) -> None:
        """Raise a one-line ValueError if the image offers fewer than ``k`` candidate patches."""
        c = self.config
        check_candidates(
            "n3net", height, width, c["k"], c["patch_size"], c["stride"], c["search_window"]
        )

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.channels)
        return run_chain(self.blocks, self.n3, x)


@register_model("n3net")
def n3net(**config: object) -> N3NetDenoiser:
    """N3Net (paper §5.1): 3 DnCNN blocks of depth 6 and 2 N3 blocks with k = 7."""
    return N3NetDenoiser(**config)


@register_model("n3net-light")
def n3net_light(**config: object) -> N3NetDenoiser:
    """N3Net light (Table 1): 2 DnCNN blocks of depth 6 and 1 N3 block."""
    config.setdefault("n_blocks", 2)
    return N3NetDenoiser(**config)
