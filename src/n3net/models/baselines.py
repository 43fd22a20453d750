"""The paper's Table 1 baselines: KNN blocks without a learned embedding, and the Concrete block.

Axis legend: ``B`` batch, ``C`` image channels, ``H, W`` image size.

* ``knn-noisy`` (iii): N3Net-shaped network whose N3 blocks are replaced by hard KNN blocks that
  match patches of the *noisy input image* (no embedding network, no temperature, no logits batch
  norm) and aggregate the block's feature tensor ``Y``.
* ``knn-dncnn`` (iv): the same, matching patches of the input pre-denoised by a DnCNN-17.
* ``concrete`` (v): N3Net with the Concrete (Gumbel-softmax) rule; its temperature network
  predicts the annealing parameter.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import Tensor, nn

from n3net.blocks.n3_image import N3Block2d
from n3net.models._chain import PatchChain, block_chain, run_chain
from n3net.models._registry import load_model, register_model
from n3net.models.dncnn import DnCNN, DnCNNBlock, check_image, init_dncnn_
from n3net.models.n3net import N3NetDenoiser
from n3net.ops.windows import Impl

__all__ = ["KNNDenoiser"]


class KNNDenoiser(PatchChain):
    """DnCNN blocks interleaved with KNN blocks that match on the (pre-denoised) input image.

    Like :class:`~n3net.models.n3net.N3NetDenoiser`, but each N3 block is an
    :class:`~n3net.blocks.n3_image.N3Block2d` with ``embedding=nn.Identity()``: it cuts the
    *guide image* into patches, finds each patch's ``k`` nearest neighbours in the search window
    (``rule="hard"`` by default: ordinary KNN, no temperature, no logits batch norm) and aggregates
    the corresponding patches of the features ``Y``. The guide is the noisy input
    (``match="noisy"``, baseline (iii)) or the output of a DnCNN pre-denoiser
    (``match="dncnn"``, baseline (iv)).

    In the paper the pre-denoiser is a DnCNN-17 trained beforehand: load its weights with
    :meth:`load_predenoiser` before training. With ``freeze_predenoiser`` (default) its weights
    get no gradient and it stays in eval mode; the hard rule passes no gradient to the guide
    anyway.

    Args:
        channels: image channels.
        k, patch_size, stride, search_window: KNN block geometry (window in patch-grid cells).
        depth, features, n_blocks, nl_channels: the DnCNN blocks, as in N3Net.
        match: ``"noisy"`` or ``"dncnn"``.
        predenoiser_depth, predenoiser_features: the pre-denoiser DnCNN (``match="dncnn"``).
        freeze_predenoiser: keep the pre-denoiser fixed.
        rule: neighbour rule (``"hard"``; ``"continuous"`` uses the fixed ``temperature``).
        temperature: fixed temperature of the continuous rule.
        impl: window aggregation implementation.

    Shape:
        x: (B, C, H, W) -> (B, C, H, W).
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
        match: Literal["noisy", "dncnn"] = "noisy",
        predenoiser_depth: int = 17,
        predenoiser_features: int = 64,
        freeze_predenoiser: bool = True,
        rule: Literal["hard", "continuous"] = "hard",
        temperature: float = 1.0,
        impl: Impl = "auto",
    ) -> None:
        super().__init__()
        if match not in ("noisy", "dncnn"):
            raise ValueError(f"match must be 'noisy' or 'dncnn', got {match!r}")
        if rule not in ("hard", "continuous"):
            raise ValueError(f"rule must be 'hard' or 'continuous', got {rule!r}")
        self.arch = f"knn-{match}"
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
            match=match,
            predenoiser_depth=predenoiser_depth,
            predenoiser_features=predenoiser_features,
            freeze_predenoiser=freeze_predenoiser,
            rule=rule,
            temperature=temperature,
            impl=impl,
        )
        self.channels = channels
        self.freeze_predenoiser = freeze_predenoiser
        self.blocks = block_chain(DnCNNBlock, channels, nl_channels, k, n_blocks, depth, features)
        self.n3 = nn.ModuleList(
            N3Block2d(
                channels,
                k,
                patch_size,
                stride,
                search_window,
                embedding=nn.Identity(),
                learn_temperature=False,
                temperature=temperature,
                logits_batchnorm=False,
                output="residual",
                rule=rule,
                impl=impl,
            )
            for _ in range(n_blocks - 1)
        )
        init_dncnn_(self)
        self.predenoiser: DnCNN | None = None
        if match == "dncnn":
            self.predenoiser = DnCNN(channels, predenoiser_depth, predenoiser_features)
            if freeze_predenoiser:
                self.predenoiser.requires_grad_(False)
                self.predenoiser.eval()

    def train(self, mode: bool = True) -> KNNDenoiser:
        super().train(mode)
        if self.predenoiser is not None and self.freeze_predenoiser:
            self.predenoiser.eval()  # a frozen pre-denoiser keeps its batch-norm statistics
        return self

    def load_predenoiser(self, source: str | os.PathLike[str] | nn.Module) -> None:
        """Copy a trained DnCNN (a model file, pretrained name or module) into the pre-denoiser."""
        if self.predenoiser is None:
            raise ValueError("this model has no pre-denoiser (match='noisy')")
        module = source if isinstance(source, nn.Module) else load_model(source)
        self.predenoiser.load_state_dict(module.state_dict(), strict=True)

    def guide(self, x: Tensor) -> Tensor:
        """The image whose patches are matched: ``x`` or the pre-denoised ``x``."""
        if self.predenoiser is None:
            return x
        if self.freeze_predenoiser:
            with torch.no_grad():
                return self.predenoiser(x)
        return self.predenoiser(x)

    def _guide_reach(self) -> int:
        """The pre-denoiser's convolutions, when the blocks match its output."""
        return self.predenoiser.receptive_radius if self.predenoiser is not None else 0

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.channels)
        return run_chain(self.blocks, self.n3, x, guide=self.guide(x))


@register_model("knn-noisy")
def knn_noisy(**config: object) -> KNNDenoiser:
    """Baseline (iii): hard KNN blocks on the noisy patches (no learned embedding)."""
    config.setdefault("match", "noisy")
    return KNNDenoiser(**config)


@register_model("knn-dncnn")
def knn_dncnn(**config: object) -> KNNDenoiser:
    """Baseline (iv): hard KNN blocks on patches pre-denoised by a DnCNN-17."""
    config.setdefault("match", "dncnn")
    return KNNDenoiser(**config)


@register_model("concrete")
def concrete(**config: object) -> N3NetDenoiser:
    """Baseline (v): N3Net whose N3 blocks use the Concrete (Gumbel-softmax) rule.

    The temperature network predicts the Concrete annealing parameter per query; the forward
    pass is stochastic (also in eval mode).
    """
    config.setdefault("rule", "concrete")
    return N3NetDenoiser(**config)
