"""Local CNN blocks interleaved with image N3 (or KNN) blocks: what N3Net, N3Net-SR and the KNN
baselines share.

Axis legend: ``B`` batch, ``C`` image channels, ``K`` neighbours, ``H, W`` image size.

The chain is ``blocks.0 -> n3.0 -> blocks.1 -> ... -> blocks.{n-1}``: block ``i`` reads the image
(i = 0) or the ``nl_channels * (k + 1)`` channels of the N3 block before it and writes
``nl_channels`` channels, except the last, which writes the image. :class:`PatchChain` holds the
geometry every caller of such a model reads (receptive field, patch grid, memory, smallest image).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from n3net.blocks.n3_image import N3Block2d
from n3net.models._geometry import check_candidates, n3_reach
from n3net.models.dncnn import DnCNNBlock, check_image, init_near_identity_

__all__ = [
    "PatchChain",
    "block_chain",
    "init_authors_",
    "init_n3_authors_",
    "run_chain",
]


def block_chain(
    block: type[DnCNNBlock],
    channels: int,
    nl_channels: int,
    k: int,
    n_blocks: int,
    depth: int,
    features: int,
) -> nn.ModuleList:
    """The ``n_blocks`` local blocks (``DnCNNBlock`` or a subclass) of an N3Net-shaped network.

    Block ``i`` reads ``channels`` (i = 0) or ``nl_channels * (k + 1)`` channels (the output of
    the N3 block before it) and writes ``nl_channels``, except the last, which writes
    ``channels``. Each adds its first ``min(in, out)`` input channels to its output, so channel
    ``0..C-1`` carries the input image through the whole chain.

    Example:
        >>> chain = block_chain(DnCNNBlock, 1, 8, 7, n_blocks=3, depth=3, features=16)
        >>> [(b.in_channels, b.out_channels) for b in chain]
        [(1, 8), (64, 8), (64, 1)]
    """
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    blocks = nn.ModuleList()
    for i in range(n_blocks):
        c_in = channels if i == 0 else nl_channels * (k + 1)
        c_out = channels if i == n_blocks - 1 else nl_channels
        blocks.append(block(c_in, c_out, depth, features))
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
    """Initialise an N3Net-shaped network near the identity, as the authors' training code does.

    Local blocks: conv weights He-normal over the fan-out, biases 0, batch-norm scales
    ``max(|N(0, 2 / (9 * features))|, 0.025)`` (DnCNN's own rule) and shifts 0, so each block
    starts close to its residual input. N3 blocks: embedding and temperature CNNs at PyTorch's
    default init, the logits batch-norm scale drawn from U(0, 1).
    """
    for block in model.blocks:
        init_near_identity_(block, features)
    init_n3_authors_(model)


def init_n3_authors_(model: nn.Module) -> None:
    """The N3 blocks of ``model.n3`` as the authors initialise them: embedding and temperature
    CNNs at PyTorch's default init, the logits batch-norm scale drawn from U(0, 1)."""
    for n3 in model.n3:
        for m in n3.modules():
            if isinstance(m, nn.Conv2d | nn.BatchNorm2d):
                m.reset_parameters()
        if n3.logits_bn is not None:
            nn.init.uniform_(n3.logits_bn.weight, 0.0, 1.0)
            nn.init.zeros_(n3.logits_bn.bias)


class PatchChain(nn.Module):
    """Base of the models that run a :func:`block_chain` with image N3 / KNN blocks ``n3``.

    Subclasses set ``arch``, ``channels``, ``config`` (with ``k``, ``patch_size``, ``stride``,
    ``search_window``, ``nl_channels`` and, for learned embeddings, ``embed_depth``),
    ``blocks`` and ``n3``. Sizes are in pixels of the network's input (for super-resolution the
    bicubic-upsampled image).
    """

    arch: str
    channels: int
    config: dict
    blocks: nn.ModuleList
    n3: nn.ModuleList
    scale = 1

    def _build_chain(self, block: type[DnCNNBlock], config: dict[str, Any]) -> None:
        """Set ``config``, ``channels``, ``blocks`` (``block`` instances, see
        :func:`block_chain`) and ``n3`` (``n_blocks - 1`` N3 blocks whose output
        ``[Y, N_1 - Y, ..., N_k - Y]`` has ``nl_channels * (k + 1)`` channels) from an
        N3Net-style config."""
        c = self.config = config
        self.channels = c["channels"]
        self.blocks = block_chain(
            block, c["channels"], c["nl_channels"], c["k"], c["n_blocks"], c["depth"], c["features"]
        )
        self.n3 = nn.ModuleList(  # N3Net's N3 blocks (§5.1): learned embedding, BN logits
            N3Block2d(
                c["nl_channels"],
                c["k"],
                c["patch_size"],
                c["stride"],
                c["search_window"],
                embed_channels=c["embed_channels"],
                embed_features=c["embed_features"],
                embed_depth=c["embed_depth"],
                temperature_scale=c["temperature_scale"],
                temperature_at=c["temperature_at"],
                logits_batchnorm=True,
                output="residual",
                rule=c.get("rule", "continuous"),
                impl=c["impl"],
            )
            for _ in range(c["n_blocks"] - 1)
        )

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that reach one output pixel.

        One per convolution of the local blocks; per N3 block its embedding CNN and the patches
        of its search window (:func:`~n3net.models._geometry.n3_reach`); plus whatever computes
        the matching guide (:meth:`_guide_reach`). The paper's N3Net:
        ``3 * 6 + 2 * (3 + 7 * 5 + 9) = 112``.
        """
        c = self.config
        per_n3 = c.get("embed_depth", 0) + n3_reach(
            c["patch_size"], c["stride"], c["search_window"]
        )
        local = sum(b.receptive_radius for b in self.blocks)
        return local + len(self.n3) * per_n3 + self._guide_reach()

    def _guide_reach(self) -> int:
        """Radius of the network that computes the image the N3 blocks match (none: 0)."""
        return 0

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
            self.arch, height, width, c["k"], c["patch_size"], c["stride"], c["search_window"]
        )

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.channels)
        return run_chain(self.blocks, self.n3, x)
