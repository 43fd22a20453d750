"""The denoise task's loss: a scaled mean squared error."""

from __future__ import annotations

import torch

from n3net.train.config import resolve_config
from n3net.train.denoise import DenoiseTask


def _loss(scale: float) -> torch.Tensor:
    config = resolve_config(sets=[f"task.loss_scale={scale}"])
    task = DenoiseTask(config)
    generator = torch.Generator().manual_seed(0)
    noisy, clean = torch.rand(2, 2, 1, 6, 6, generator=generator)
    return task.loss(lambda x: x * 0.5, (noisy, clean), step=0)


def test_loss_is_scaled_mse() -> None:
    generator = torch.Generator().manual_seed(0)
    noisy, clean = torch.rand(2, 2, 1, 6, 6, generator=generator)
    mse = ((noisy * 0.5 - clean) ** 2).mean()
    assert torch.equal(_loss(1.0), mse)  # scale 1 is the plain MSE, bit for bit
    torch.testing.assert_close(_loss(800.0), 800 * mse)
