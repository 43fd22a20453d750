"""N3Net for image denoising (paper §5.1): DnCNN blocks interleaved with image N3 blocks.

Axis legend: ``B`` batch, ``C`` image channels, ``K`` neighbours, ``H, W`` image size.
"""

from __future__ import annotations

from typing import Literal

from n3net.models._chain import PatchChain, init_authors_
from n3net.models._registry import register_model
from n3net.models.dncnn import DnCNNBlock, init_dncnn_
from n3net.ops.windows import Impl

__all__ = ["N3NetDenoiser"]


class N3NetDenoiser(PatchChain):
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
            rule=rule,
            impl=impl,
        )
        self._build_chain(DnCNNBlock, config)
        if init != "authors":
            self.config["init"] = init
        if init == "dncnn":
            init_dncnn_(self)
        else:
            init_authors_(self, features)


@register_model("n3net")
def n3net(**config: object) -> N3NetDenoiser:
    """N3Net (paper §5.1): 3 DnCNN blocks of depth 6 and 2 N3 blocks with k = 7."""
    return N3NetDenoiser(**config)


@register_model("n3net-light")
def n3net_light(**config: object) -> N3NetDenoiser:
    """N3Net light (Table 1): 2 DnCNN blocks of depth 6 and 1 N3 block."""
    config.setdefault("n_blocks", 2)
    return N3NetDenoiser(**config)
