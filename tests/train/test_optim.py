"""Optimisation pieces: parameter groups, schedules, gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from n3net.train.optim import (
    ClipGradNorm,
    ExponentialSchedule,
    Progress,
    StepSchedule,
    lr_at,
    param_groups,
)


def test_lr_schedule_endpoints() -> None:
    assert lr_at(0.0, 1e-3, 1e-6) == 1e-3
    assert math.isclose(lr_at(1.0, 1e-3, 1e-6), 1e-6)
    assert math.isclose(lr_at(0.5, 1e-3, 1e-6), 10**-4.5)
    assert math.isclose(lr_at(2.0, 1e-3, 1e-6), 1e-6)  # clamped past the end
    # [code]: 1e-3 * 10^(-3 e / 50) after e of 50 epochs.
    assert math.isclose(lr_at(20 / 50, 1e-3, 1e-6), 1e-3 * 10 ** (-3 * 20 / 50))


def test_param_groups_decay_conv_weights_and_bn_scales() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 3, bias=False))
    model.register_parameter("scale", nn.Parameter(torch.ones(1)))
    decay, rest = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and rest["weight_decay"] == 0.0
    ids = {id(p) for p in decay["params"]}
    assert ids == {id(model[0].weight), id(model[1].weight), id(model[2].weight)}
    undecayed = {id(model[0].bias), id(model[1].bias), id(model.scale)}
    assert {id(p) for p in rest["params"]} == undecayed


def test_exponential_schedule_follows_the_budget_fraction() -> None:
    schedule = ExponentialSchedule(1e-3, 1e-6)
    for fraction in (0.0, 0.3, 1.0, 1.5):
        at = Progress(step=7, fraction=fraction, epoch=123.0)  # step and epoch do not matter
        assert schedule(at) == lr_at(fraction, 1e-3, 1e-6)


@pytest.mark.parametrize(
    "epoch, expected", [(0.0, 0.1), (19.99, 0.1), (20.0, 0.01), (39.0, 0.01), (40.0, 0.001)]
)
def test_step_schedule(epoch: float, expected: float) -> None:
    schedule = StepSchedule(0.1, every_epochs=20, gamma=0.1)
    assert math.isclose(schedule(Progress(step=0, fraction=0.9, epoch=epoch)), expected)


def test_clip_grad_norm() -> None:
    small, large = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    small.grad, large.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])
    ClipGradNorm(26.0)([small, large], lr=1.0)  # the norm is 13: unchanged
    assert small.grad.tolist() == pytest.approx([3.0, 4.0]) and large.grad.item() == 12.0
    ClipGradNorm(1.3)([small, large], lr=1.0)
    norm = torch.cat([small.grad, large.grad]).norm().item()
    assert norm == pytest.approx(1.3, rel=1e-5)
    assert large.grad.item() == pytest.approx(1.2, rel=1e-5)  # scaled by 1/10, direction kept
