"""Models (denoising §5.1-5.2, super-resolution §5.4), their registry, and the model-file format.

Architectures: denoising ``dncnn``, ``n3net``, ``n3net-light``, ``knn-noisy``, ``knn-dncnn``,
``concrete`` and the classic ``bm3d`` and ``nlm`` (no weights); super-resolution ``vdsr``,
``n3net-sr`` and ``bicubic`` (no weights); correspondence classification (§5.5) ``cnnet``,
``cnnet-n3`` and the pose baselines ``eight-point``, ``ransac``, ``ransac-10k``, ``lmeds``,
``oracle`` (no weights); see :func:`list_architectures`; shipped weights: :func:`list_pretrained`.
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
from n3net.models.classic import BM3D, NLM, BicubicInterpolation, ClassicDenoiser
from n3net.models.cnnet import CNNet
from n3net.models.dncnn import DnCNN, DnCNNBlock, init_dncnn_
from n3net.models.geometric import EightPoint, OpenCVEstimator, Oracle
from n3net.models.n3net import N3NetDenoiser
from n3net.models.n3net_sr import N3NetSR
from n3net.models.vdsr import VDSR, VDSRBlock

__all__ = [
    "BM3D",
    "NLM",
    "VDSR",
    "ArchInfo",
    "CNNet",
    "BicubicInterpolation",
    "ClassicDenoiser",
    "DnCNN",
    "DnCNNBlock",
    "EightPoint",
    "KNNDenoiser",
    "N3NetDenoiser",
    "OpenCVEstimator",
    "Oracle",
    "N3NetSR",
    "VDSRBlock",
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
