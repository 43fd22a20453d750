"""Image tasks: trained on random crops of grey images, validated on whole held-out images.

:class:`ImageTask` does what denoising, super-resolution and real-noise denoising share: the
image folders (``data.train_dirs``), the held-out validation images (``data.val_images`` /
``data.val_dir``), the counter-based crop stream (:mod:`n3net.train.data`) and the records. A
subclass writes :meth:`~ImageTask.training_pair` (the crops' degradation: a picklable callable),
:meth:`~ImageTask.score` (one validation image) and :meth:`~n3net.train.tasks.Task.loss`. For
example, super-resolution: a bicubic degradation in ``training_pair``, Y-PSNR with a border
shave in ``score`` (one column per scale by overriding ``validate``), SGD with step decay and a
clip in ``optimisation``; real noise: a pair ``(noisy, noise maps, clean)``.

Axis legend: ``B`` batch, ``S`` crop side, ``H, W`` image size.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from n3net.data.imageio import list_images
from n3net.data.protocol import load_gray_protocol
from n3net.train.data import (
    BatchPlan,
    DeviceSampler,
    ImageBank,
    LoaderSampler,
    MakePair,
    list_training_images,
    load_bank,
)
from n3net.train.tasks import BatchSource, Forward, Task

__all__ = ["DegradedPairs", "ImageTask"]


class DegradedPairs:
    """``make_pair`` of a task whose input is a degraded crop: ``(degrade(crops), crops)``.

    Args:
        degradation: a module ``(x, generator) -> x'`` from :mod:`n3net.degradations`.

    Example:
        >>> from n3net.degradations import GaussianNoise
        >>> noisy, clean = DegradedPairs(GaussianNoise(25))(torch.zeros(2, 1, 4, 4), None)
        >>> noisy.shape, bool(clean.eq(0).all())
        (torch.Size([2, 1, 4, 4]), True)
    """

    def __init__(self, degradation: nn.Module) -> None:
        self.degradation = degradation

    def __call__(self, crops: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return self.degradation(crops, generator), crops


class ImageTask(Task):
    """A task trained on crops of the images of ``data.train_dirs`` (see the module docstring)."""

    def load(self, with_validation: bool, with_training: bool = True) -> None:
        """List the images, hold some out for validation, read the training ones into memory."""
        data = self.config.data
        files = list_training_images([self.config.resolve_path(d) for d in data.train_dirs])
        if data.val_dir is not None:
            val_files = list_images(self.config.resolve_path(data.val_dir))
        else:
            held_out = data.val_images if data.val_images < len(files) else 0
            if data.val_images and not held_out:
                raise ValueError(f"data.val_images={data.val_images} leaves no training images")
            files, val_files = files[: len(files) - held_out], files[len(files) - held_out :]
        self.bank = load_bank(files, data.crop_size) if with_training else ImageBank.empty()
        self.val_count = len(val_files)
        self.val_images = [load_gray_protocol(p) for p in val_files] if with_validation else []

    @property
    def epoch_size(self) -> int:
        return len(self.bank) * self.config.data.crops_per_image

    @property
    def has_validation(self) -> bool:
        return self.val_count > 0

    @abstractmethod
    def training_pair(self) -> MakePair:
        """The picklable ``(crops, generator) -> batch`` applied to every batch's crops."""

    def batches(self, start: int, rank: int, world_size: int, device: torch.device) -> BatchSource:
        data, train = self.config.data, self.config.train
        plan = BatchPlan(
            train.seed, train.batch_size // world_size, world_size, rank, data.crop_size,
            data.crops_per_image,
        )  # fmt: skip
        if data.sampler == "device":
            return DeviceSampler(self.bank, plan, start, device, self.training_pair())
        return LoaderSampler(self.bank, plan, start, device, self.training_pair(), train.workers)

    @abstractmethod
    def score(self, forward: Forward, index: int, image: Tensor, device: torch.device) -> float:
        """Score validation image ``index``, a (1, 1, H, W) CPU tensor in [0, 1]."""

    def validate(self, forward: Forward, device: torch.device) -> dict[str, float]:
        """The mean of :meth:`score` over the validation images, under :attr:`metric`."""
        values = [self.score(forward, i, image, device) for i, image in enumerate(self.val_images)]
        return {self.metric: float(np.mean(values))}

    def images_text(self) -> str:
        return f"{len(self.bank)} training / {self.val_count} validation images"

    def batch_text(self) -> str:
        crop = self.config.data.crop_size
        return f"batch {self.config.train.batch_size} of {crop}x{crop}"

    def describe(self) -> str:
        return f"{self.images_text()}, {self.batch_text()}"

    def metadata(self) -> dict[str, Any]:
        data, train = self.config.data, self.config.train
        return {
            "train_data": f"{', '.join(data.train_dirs)} ({len(self.bank)} images, "
            f"{self.val_count} held out for validation)",
            "protocol": f"preset {data.preset}, batch {train.batch_size} of "
            f"{data.crop_size}x{data.crop_size}, amp {train.amp}",
        }

    def summary(self) -> dict[str, Any]:
        crop = self.config.data.crop_size
        return {"batch": f"{self.config.train.batch_size} x {crop}x{crop}"}
