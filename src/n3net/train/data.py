"""Training data of image tasks: grey images in memory, random crops with flips/rotations.

Randomness is counter-based: every batch is a pure function of ``(seed, batch index, rank)``,
drawn from a ``torch.Generator`` seeded with those numbers. A checkpoint therefore needs only the
seed and the next batch index to continue the exact same stream, and the stream does not depend on
the number of DataLoader workers or on which process cuts the crops.

Epochs follow the paper: every epoch each training image gives ``crops_per_image`` crops, in an
order shuffled with a generator seeded by ``(seed, epoch)`` and shared by all ranks; global batch
``b`` takes positions ``[b·B, (b+1)·B)`` of that stream and rank ``r`` of ``R`` its ``r``-th slice.

Each batch's crops go through the task's ``make_pair(crops, generator)`` (e.g. adding noise
with :class:`n3net.degradations.GaussianNoise`), drawing from the same generator right after the
crops; what it returns is the batch. It must be picklable (DataLoader workers run it).

Axis legend: ``N`` images, ``B`` crops in a batch, ``H, W`` image size, ``S`` crop side.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from n3net.data.imageio import list_images
from n3net.data.protocol import load_gray_protocol

__all__ = [
    "BatchPlan",
    "MakePair",
    "CropStream",
    "DeviceSampler",
    "ImageBank",
    "LoaderSampler",
    "batch_generator",
    "cut_crops",
    "list_training_images",
    "load_bank",
    "make_batch",
    "to_device",
    "mix_seed",
]


def list_training_images(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """List the images of each folder in sorted file-name order, folder after folder."""
    files: list[Path] = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        found = list_images(folder)
        if not found:
            raise ValueError(f"training folder {folder} holds no images")
        files.extend(found)
    return files


@dataclass
class ImageBank:
    """Grey images padded into one uint8 tensor, with each image's true size.

    Attributes:
        images: (N, H_max, W_max) uint8; image ``i`` occupies ``[:sizes[i, 0], :sizes[i, 1]]``.
        sizes: (N, 2) int64 heights and widths.
        names: file names, for messages.
    """

    images: Tensor
    sizes: Tensor
    names: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    @staticmethod
    def empty() -> ImageBank:
        """A bank of no images (a task loaded for validation only)."""
        return ImageBank(
            torch.zeros(0, 0, 0, dtype=torch.uint8), torch.zeros(0, 2, dtype=torch.int64), []
        )

    def to(self, device: torch.device | str) -> ImageBank:
        """Return the bank with its tensors on ``device``."""
        return ImageBank(self.images.to(device), self.sizes.to(device), self.names)

    def image(self, index: int) -> Tensor:
        """Return image ``index`` as float32 in [0, 1] of shape (1, 1, H, W)."""
        height, width = self.sizes[index].tolist()
        return self.images[index, :height, :width].float().div(255)[None, None]


def load_bank(
    files: Sequence[Path],
    min_size: int = 1,
    read: Callable[[Path], Tensor] = load_gray_protocol,
) -> ImageBank:
    """Read images with the evaluation protocol's grey conversion into an :class:`ImageBank`.

    Args:
        files: image files.
        min_size: smallest allowed height and width (the crop size).
        read: reads one file as a (1, 1, H, W) float image in [0, 1], rounded to 8 bits here
            (the denoising protocol's grey by default; super-resolution reads the luminance).
    """
    arrays = []
    for path in files:
        array = (read(path)[0, 0] * 255).round().to(torch.uint8)  # exact for k / 255 values
        if min(array.shape) < min_size:
            height, width = array.shape
            raise ValueError(f"image {path} is {width}x{height}, smaller than crop_size {min_size}")
        arrays.append(array)
    if not arrays:
        raise ValueError("no images to load")
    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    images = torch.zeros(len(arrays), height, width, dtype=torch.uint8)
    for index, array in enumerate(arrays):
        images[index, : array.shape[0], : array.shape[1]] = array
    sizes = torch.tensor([a.shape for a in arrays], dtype=torch.int64)
    return ImageBank(images, sizes, [path.name for path in files])


def mix_seed(*values: int) -> int:
    """Mix non-negative integers (seed, stream tag, counters) into one 63-bit generator seed."""
    state = np.random.SeedSequence(list(values)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# Stream tags: per-batch crops and degradation; per-epoch image order; the DataLoader's base seed.
_CROPS, _EPOCHS, _LOADER = 0, 1, 3


def batch_generator(
    seed: int, batch: int, rank: int, device: torch.device | str
) -> torch.Generator:
    """Return the generator of one batch's crops and degradation, seeded from its coordinates."""
    generator = torch.Generator(device=device)
    generator.manual_seed(mix_seed(seed, _CROPS, batch, rank))
    return generator


def cut_crops(
    bank: ImageBank, indices: Tensor, crop_size: int, generator: torch.Generator
) -> Tensor:
    """Cut random square crops with a random flip / 90° rotation each (the 8 dihedral maps).

    Args:
        bank: the images, on the generator's device.
        indices: which image each crop comes from, (B,) int64 on the same device.
        crop_size: crop side S.
        generator: source of the positions and transforms.
    Returns:
        Crops as float32 in [0, 1], shape (B, 1, S, S).
    """
    device = bank.images.device
    count = indices.shape[0]
    sizes = bank.sizes[indices]  # (B, 2)
    uniform = torch.rand(count, 2, generator=generator, device=device)
    corner = (uniform * (sizes - crop_size + 1)).long().clamp_min(0)  # (B, 2) top, left
    offsets = torch.arange(crop_size, device=device)
    rows = (corner[:, 0, None] + offsets)[:, :, None]  # (B, S, 1)
    cols = (corner[:, 1, None] + offsets)[:, None, :]  # (B, 1, S)
    crops = bank.images[indices[:, None, None], rows, cols]  # (B, S, S) uint8
    # Any dihedral map = optional transpose after optional flips of rows and columns.
    flips = torch.randint(0, 2, (count, 3), generator=generator, device=device).bool()
    crops = torch.where(flips[:, 0, None, None], crops.flip(-2), crops)
    crops = torch.where(flips[:, 1, None, None], crops.flip(-1), crops)
    crops = torch.where(flips[:, 2, None, None], crops.transpose(-2, -1), crops)
    return crops[:, None].float().div_(255)


class _EpochOrder:
    """Which image each crop position comes from; one epoch's order cached on ``device``.

    The permutation is drawn on the CPU so that every device sees the same order.
    """

    def __init__(
        self, num_images: int, crops_per_image: int, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        self.num_images = num_images
        self.epoch_length = num_images * crops_per_image
        self.seed = seed
        self.device = device
        self._cache: dict[int, Tensor] = {}

    def _epoch(self, epoch: int) -> Tensor:
        if epoch not in self._cache:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, _EPOCHS, epoch))
            order = torch.randperm(self.epoch_length, generator=generator) % self.num_images
            self._cache = {epoch: order.to(self.device)}  # positions only move forward
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> Tensor:
        """Image indices of stream positions ``[start, start + count)``, (count,) int64."""
        parts = []
        while count > 0:
            epoch, offset = divmod(start, self.epoch_length)
            take = min(count, self.epoch_length - offset)
            parts.append(self._epoch(epoch)[offset : offset + take])
            start, count = start + take, count - take
        return torch.cat(parts)


@dataclass
class BatchPlan:
    """What every batch of one process looks like (plain values: picklable for workers)."""

    seed: int
    batch_size: int  # per process
    world_size: int
    rank: int
    crop_size: int
    crops_per_image: int

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size


MakePair = Callable[[Tensor, torch.Generator], Any]  # (crops, generator) -> batch


def make_batch(
    bank: ImageBank, order: _EpochOrder, plan: BatchPlan, batch: int, make_pair: MakePair
) -> Any:
    """Build batch ``batch`` of this rank on the bank's device from (B, 1, S, S) crops."""
    device = bank.images.device
    start = batch * plan.global_batch + plan.rank * plan.batch_size
    indices = order.indices(start, plan.batch_size)
    generator = batch_generator(plan.seed, batch, plan.rank, device)
    clean = cut_crops(bank, indices, plan.crop_size, generator)
    return make_pair(clean, generator)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (a tensor, or tuples, lists and dicts of them) to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


class CropStream(IterableDataset):
    """Endless stream of batches from ``start``; worker ``w`` of ``W`` makes batches w, w+W, ...

    The DataLoader returns the workers' outputs round-robin, so the batches arrive in order.
    """

    def __init__(self, bank: ImageBank, plan: BatchPlan, start: int, make_pair: MakePair) -> None:
        super().__init__()
        self.bank, self.plan, self.start, self.make_pair = bank, plan, start, make_pair

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = _EpochOrder(len(self.bank), self.plan.crops_per_image, self.plan.seed)
        batch = self.start + worker
        while True:
            yield make_batch(self.bank, order, self.plan, batch, self.make_pair)
            batch += workers


class LoaderSampler:
    """Batches cut on the CPU by DataLoader workers (or in-process with ``workers = 0``).

    Args:
        bank: the training images on the CPU.
        plan: batch layout and seeds.
        start: index of the first batch (the step to resume from).
        device: where batches are moved.
        make_pair: turns a batch's crops into the batch (see the module docstring).
        workers: worker processes.
    """

    def __init__(
        self,
        bank: ImageBank,
        plan: BatchPlan,
        start: int,
        device: torch.device,
        make_pair: MakePair,
        workers: int = 0,
    ) -> None:
        self.device = device
        pin = device.type == "cuda"
        loader = DataLoader(
            CropStream(bank, plan, start, make_pair),
            batch_size=None,
            num_workers=workers,
            pin_memory=pin,
            prefetch_factor=4 if workers > 0 else None,
            # Its own generator: the loader's worker base seed must not draw from the global RNG.
            generator=torch.Generator().manual_seed(mix_seed(plan.seed, _LOADER, start)),
        )
        self._iterator = iter(loader)

    def __next__(self) -> Any:
        return to_device(next(self._iterator), self.device)

    def __iter__(self) -> LoaderSampler:
        return self

    def close(self) -> None:
        """Stop the worker processes."""
        del self._iterator


class DeviceSampler:
    """Batches cut on the training device from images kept there (no worker processes).

    Same stream layout as :class:`LoaderSampler`; the draws come from generators on the device,
    so on a GPU the values differ from the CPU's while staying reproducible.
    """

    def __init__(
        self,
        bank: ImageBank,
        plan: BatchPlan,
        start: int,
        device: torch.device,
        make_pair: MakePair,
    ) -> None:
        self.bank = bank.to(device)
        self.plan = plan
        self.make_pair = make_pair
        self.batch = start
        self.order = _EpochOrder(len(bank), plan.crops_per_image, plan.seed, device)

    def __next__(self) -> Any:
        batch = make_batch(self.bank, self.order, self.plan, self.batch, self.make_pair)
        self.batch += 1
        return batch

    def __iter__(self) -> DeviceSampler:
        return self

    def close(self) -> None:
        """Nothing to stop."""
