"""Denoising models (paper §5.1-5.2), their registry, and the safetensors model-file format.

Architectures: ``dncnn``, ``n3net``, ``n3net-light``, ``knn-noisy``, ``knn-dncnn``,
``concrete``, and the classic ``bm3d`` and ``nlm`` (no weights; see :func:`list_architectures`);
shipped weights: :func:`list_pretrained`.
"""

from n3net.models._registry import (
    ArchInfo,
    arch_info,
    create_model,
    list_architectures,
    list_pretrained,
    load_model,
    model_metadata,
    register_model,
    save_model,
)
from n3net.models.baselines import KNNDenoiser
from n3net.models.classic import BM3D, NLM, ClassicDenoiser
from n3net.models.dncnn import DnCNN, DnCNNBlock, init_dncnn_
from n3net.models.n3net import N3NetDenoiser

__all__ = [
    "BM3D",
    "NLM",
    "ArchInfo",
    "ClassicDenoiser",
    "DnCNN",
    "DnCNNBlock",
    "KNNDenoiser",
    "N3NetDenoiser",
    "arch_info",
    "create_model",
    "init_dncnn_",
    "list_architectures",
    "list_pretrained",
    "load_model",
    "model_metadata",
    "register_model",
    "save_model",
]
