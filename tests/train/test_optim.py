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


def test_optimisation_describes_what_each_task_trains_with() -> None:
    from n3net.train.optim import (
        ClipGradByLr,
        HoldExponentialSchedule,
        Optimisation,
        StepFractionSchedule,
    )

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    sgd = torch.optim.SGD(param_groups(model, 1e-4), lr=0.1, momentum=0.9)
    vdsr = Optimisation(sgd, StepFractionSchedule(0.1, every=0.25), ClipGradByLr(0.01))
    assert vdsr.describe() == (
        "SGD (momentum 0.9), L2 weight decay 0.0001 on weights and norm scales, lr 0.1, times "
        "0.1 after every 25 % of the run, gradient norm clipped to 0.01 / lr"
    )
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    corr = Optimisation(adam, HoldExponentialSchedule(1e-3, 1e-3, 0.0))
    assert corr.describe() == (
        "Adam (betas 0.9, 0.999), L2 weight decay 1e-05 on all parameters, constant lr 0.001"
    )
    plain = Optimisation(
        torch.optim.Adam(model.parameters()), HoldExponentialSchedule(1e-3, 1e-6, 0)
    )
    assert plain.describe().endswith(
        "no weight decay, lr 0.001 decaying exponentially to 1e-06 over the run"
    )

    def custom(at: object) -> float:  # a task's own schedule, without describe()
        return 1e-3

    assert "function" in Optimisation(adam, custom).describe()
