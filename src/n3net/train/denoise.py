"""The ``denoise`` task: Gaussian grey denoising with the paper's protocol (§5.1).

Training pairs: random crops plus white Gaussian noise of ``task.sigma`` (on the 0-255 scale, no
clipping) drawn from each batch's generator. Loss: ``task.loss_scale`` times the mean squared
error against the clean crop. Optimisation: the :class:`~n3net.train.tasks.Task` default,
Adam with L2 decay on conv weights and BN scales; the lr is held for the first half of the
run, then decays exponentially (``train.lr_hold = 0.5``: at equal steps it beat the
authors' plain decay, ``docs/training/recipe.md``).
Validation: the mean PSNR over the held-out images, each with its own fixed noise (``val_psnr``).

This module is also the template of a new image task (see :mod:`n3net.train.tasks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from n3net.degradations import GaussianNoise
from n3net.eval.metrics import psnr
from n3net.train.data import MakePair, mix_seed
from n3net.train.image_task import DegradedPairs, ImageTask
from n3net.train.tasks import Forward, TaskConfig, register_task

__all__ = ["PRESETS", "DenoiseConfig", "DenoiseTask"]

_VALIDATION_STREAM = 2  # mix_seed tag of the validation noise

# Per preset: values for the data and train sections, applied before the file and the flags.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The paper: the 400 BSDS500 train + test images at full size in grey (the evaluation
    # protocol's conversion), 80x80 crops, 128 per image and epoch [code], batch 32.
    "paper": {
        "data": {"train_dirs": ["bsd200", "bsds500_test"], "crop_size": 80, "crops_per_image": 128},
        "train": {"batch_size": 32},
    },
    # DnCNN's lighter set: the 400 grey 180x180 crops (Train400) cut into 40x40 patches, batch
    # 128, as DnCNN trained (its sigma = 25 model saw about 600 patches per image and epoch).
    "dncnn": {
        "data": {"train_dirs": ["bsd400"], "crop_size": 40, "crops_per_image": 512},
        "train": {"batch_size": 128},
    },
}


@dataclass
class DenoiseConfig(TaskConfig):
    """The ``[task]`` table of ``denoise``.

    Attributes:
        sigma: noise standard deviation on the 0-255 scale, in training and validation.
        loss_scale: the loss is this times the mean squared error. 800 is the authors'
            reduction (half the squared error summed over the pixels, normalised to a 40x40
            patch, i.e. 800 x MSE at any crop size), under which ``train.weight_decay`` and
            Adam's eps mean what they mean in the paper; Adam ignores the scale otherwise. 1
            (plain MSE) makes a decay of 1e-4 act 800 times stronger. ``n3net train``
            defaults to 800 (see ``docs/training/recipe.md``); configs and checkpoints
            written without the key mean 1.
    """

    sigma: float = 25.0
    loss_scale: float = 1.0

    def validate(self) -> None:
        if self.sigma < 0:
            raise ValueError(f"task.sigma must be >= 0, got {self.sigma}")
        if not self.loss_scale > 0:
            raise ValueError(f"task.loss_scale must be > 0, got {self.loss_scale}")


@register_task("denoise")
class DenoiseTask(ImageTask):
    """Gaussian grey denoising (see the module docstring)."""

    Config = DenoiseConfig
    metric = "val_psnr"
    columns = ("val_psnr",)
    presets = PRESETS
    # The authors' loss reduction, under which weight decay 1e-4 is the paper's strength (an
    # older config or checkpoint without the key keeps the dataclass default, plain MSE), and
    # lr held for the first half of the run (at equal steps it beat the plain decay).
    defaults: dict[str, dict[str, Any]] = {
        "task": {"loss_scale": 800.0},
        "train": {"lr_hold": 0.5},
    }

    options: DenoiseConfig

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Configs written before the ``[task]`` table kept the noise level as ``data.sigma``."""
        data = values.get("data")
        if isinstance(data, dict) and "sigma" in data:
            task = values.setdefault("task", {})
            if isinstance(task, dict):
                task.setdefault("sigma", data.pop("sigma"))
        return values

    def training_pair(self) -> MakePair:
        return DegradedPairs(GaussianNoise(self.options.sigma))

    def loss(self, forward: Forward, batch: tuple[Tensor, Tensor], step: int) -> Tensor:
        noisy, clean = batch
        return self.options.loss_scale * F.mse_loss(forward(noisy).float(), clean)

    def validation_pair(self, index: int, image: Tensor) -> tuple[Tensor, Tensor]:
        """(noisy, clean) for validation image ``index``: fixed noise from (seed, index)."""
        seed = mix_seed(self.config.train.seed, _VALIDATION_STREAM, index)
        generator = torch.Generator().manual_seed(seed)
        return GaussianNoise(self.options.sigma)(image, generator), image

    def score(self, forward: Forward, index: int, image: Tensor, device: torch.device) -> float:
        noisy, clean = self.validation_pair(index, image)
        return psnr(forward(noisy.to(device)).float(), clean)

    def report(self, values: dict[str, float]) -> str:
        return f"validation PSNR {values['val_psnr']:.3f} dB"

    def describe(self) -> str:
        return f"{self.images_text()}, sigma {self.options.sigma}, {self.batch_text()}"

    def metadata(self) -> dict[str, Any]:
        return {
            "sigma": f"{self.options.sigma:g}",
            **super().metadata(),
            "loss": f"{self.options.loss_scale:g} x MSE",
        }
