"""Multi-process training under torchrun: detection, process group, DDP wrapping, rank-0 duties.

``torchrun --nproc_per_node N -m n3net train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`detect` reads them. The process group uses NCCL on CUDA and Gloo on the
CPU. Each rank draws its own slice of every global batch (see :mod:`n3net.train.data`); only rank 0
logs, shows progress, validates and writes files.

Batch norm: DnCNN and N3Net contain BatchNorm. By default every process normalises with the
statistics of its own part of the batch (plain ``BatchNorm2d``, the usual DDP behaviour; the
running statistics of rank 0 are the ones saved). ``train.sync_bn = true`` converts the layers to
``SyncBatchNorm`` (CUDA only), which normalises with the statistics of the whole global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "barrier", "cleanup", "detect", "reduce_mean", "setup", "wrap_model"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); single otherwise."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return DistInfo(rank, world_size, local_rank)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """Turn ``"auto"``/``"cuda"``/``"cpu"``/``"cuda:N"`` into this process's device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device is {name!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", info.local_rank if info.distributed else 0)
    return device


def setup(info: DistInfo, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, Gloo on CPU) when running under torchrun."""
    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def wrap_model(
    model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool = False
) -> nn.Module:
    """Wrap the model in DDP when distributed; optionally with SyncBatchNorm (CUDA only)."""
    if not info.distributed:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("train.sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over all ranks (unchanged when not distributed)."""
    if not info.distributed:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Return rank 0's value of ``flag`` on every rank (e.g. "the time budget is spent")."""
    if not info.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if info.distributed and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group after a final barrier."""
    if info.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
