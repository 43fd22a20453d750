"""Training data: image bank, crops and augmentations, epoch order, samplers, batch pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from n3net.data.protocol import load_gray_protocol
from n3net.degradations import GaussianNoise
from n3net.train.data import (
    BatchPlan,
    DeviceSampler,
    LoaderSampler,
    _EpochOrder,
    batch_generator,
    cut_crops,
    list_training_images,
    load_bank,
    make_batch,
)
from n3net.train.image_task import DegradedPairs


@pytest.fixture
def bank(tiny_root: Path):
    return load_bank(list_training_images([tiny_root / "imgs"]), min_size=16)


def _plan(**changes: object) -> BatchPlan:
    values = dict(seed=3, batch_size=4, world_size=1, rank=0, crop_size=8, crops_per_image=3)
    values.update(changes)
    return BatchPlan(**values)


def test_bank_holds_protocol_grey(tiny_root: Path, bank) -> None:
    files = list_training_images([tiny_root / "imgs"])
    assert [f.name for f in files] == sorted(f.name for f in files)
    assert bank.images.dtype == torch.uint8 and len(bank) == 8
    for index, path in enumerate(files):
        expected = load_gray_protocol(path)
        assert tuple(bank.sizes[index]) == expected.shape[-2:]
        assert torch.equal(bank.image(index), expected)


def test_bank_errors(tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smaller than crop_size 40"):
        load_bank(list_training_images([tiny_root / "imgs"]), min_size=40)
    with pytest.raises(FileNotFoundError, match="training folder not found"):
        list_training_images([tmp_path / "missing"])
    with pytest.raises(ValueError, match="holds no images"):
        list_training_images([tmp_path])


PAIRS = DegradedPairs(GaussianNoise(25.0))


def _dihedral(window: torch.Tensor) -> list[torch.Tensor]:
    maps = []
    for k in range(4):
        rotated = torch.rot90(window, k, (-2, -1))
        maps += [rotated, rotated.flip(-1)]
    return maps


def test_crops_are_transformed_windows(bank) -> None:
    indices = torch.arange(len(bank)).repeat(6)
    crops = cut_crops(bank, indices, 8, batch_generator(0, 0, 0, "cpu"))
    assert crops.shape == (48, 1, 8, 8) and crops.dtype == torch.float32
    seen = set()
    for crop, index in zip(crops, indices.tolist(), strict=True):
        image = bank.image(index)[0, 0]
        found = False
        for top in range(image.shape[0] - 7):
            for left in range(image.shape[1] - 7):
                maps = _dihedral(image[top : top + 8, left : left + 8])
                for which, mapped in enumerate(maps):
                    if torch.equal(mapped, crop[0]):
                        found = True
                        seen.add(which)
        assert found
    assert len(seen) >= 6  # the flips and rotations are all used


def test_crops_can_span_whole_image(bank) -> None:
    """A crop of the full height must fit: top is drawn from [0, H - S]."""
    height = int(bank.sizes[:, 0].min())
    width = int(bank.sizes[:, 1].min())
    side = min(height, width)
    crops = cut_crops(bank, torch.zeros(5, dtype=torch.long), side, torch.Generator())
    assert crops.shape == (5, 1, side, side)


def test_epoch_order_uses_each_image_equally() -> None:
    order = _EpochOrder(num_images=5, crops_per_image=3, seed=1)
    first = order.indices(0, 15)
    assert torch.equal(torch.bincount(first, minlength=5), torch.full((5,), 3))
    straddling = order.indices(10, 10)  # 5 from epoch 0, 5 from epoch 1
    assert torch.equal(straddling[:5], first[10:])
    assert not torch.equal(order.indices(15, 15), first)


def test_ranks_split_the_global_batch(bank) -> None:
    single = make_batch(bank, _EpochOrder(len(bank), 3, 3), _plan(batch_size=4), 2, PAIRS)
    assert single[0].shape == (4, 1, 8, 8)
    order = _EpochOrder(len(bank), 3, 3)
    halves = [
        make_batch(bank, order, _plan(batch_size=2, world_size=2, rank=r), 2, PAIRS) for r in (0, 1)
    ]
    assert not torch.equal(halves[0][1], halves[1][1])
    # Same images as the single-process batch (crops differ: per-rank generators).
    plan = _plan(batch_size=2, world_size=2)
    assert plan.global_batch == 4


def test_noise_level(bank) -> None:
    order, pairs = _EpochOrder(len(bank), 3, 0), DegradedPairs(GaussianNoise(50.0))
    noisy, clean = make_batch(bank, order, _plan(batch_size=64), 0, pairs)
    noise = (noisy - clean).flatten().double()
    assert abs(noise.std().item() - 50 / 255) < 0.01
    assert abs(noise.mean().item()) < 0.01
    assert clean.min() >= 0 and clean.max() <= 1


def test_samplers_agree_and_resume_anywhere(bank) -> None:
    """Batches depend on (seed, batch index) only: any start, sampler or worker count."""
    plan = _plan()
    device = torch.device("cpu")
    reference = DeviceSampler(bank, plan, 0, device, PAIRS)
    batches = [next(reference) for _ in range(6)]
    resumed = DeviceSampler(bank, plan, 3, device, PAIRS)
    in_process = LoaderSampler(bank, plan, 2, device, PAIRS, workers=0)
    workers = LoaderSampler(bank, plan, 1, device, PAIRS, workers=2)
    try:
        for index in range(3, 6):
            assert all(map(torch.equal, next(resumed), batches[index]))
        for index in range(2, 6):
            assert all(map(torch.equal, next(in_process), batches[index]))
        for index in range(1, 6):
            assert all(map(torch.equal, next(workers), batches[index]))
    finally:
        workers.close()
    assert not torch.equal(batches[0][0], batches[1][0])
    other_seed = DeviceSampler(bank, _plan(seed=4), 0, device, PAIRS)
    assert not torch.equal(next(other_seed)[0], batches[0][0])


def test_sampler_on_cuda_if_present(bank) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    sampler = DeviceSampler(bank, _plan(), 0, torch.device("cuda"), PAIRS)
    noisy, clean = next(sampler)
    assert noisy.is_cuda and noisy.shape == (4, 1, 8, 8)
    assert np.isfinite(noisy.cpu().numpy()).all()


def test_dict_batches_move_to_the_device(bank) -> None:
    """A task's batch may be a dict of tensors; the loader moves every tensor."""

    def as_dict(crops: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"target": crops, "shift": torch.rand(crops.shape[0], generator=generator)}

    sampler = LoaderSampler(bank, _plan(), 0, torch.device("cpu"), as_dict, workers=0)
    batch = next(sampler)
    assert batch.keys() == {"target", "shift"} and batch["target"].shape == (4, 1, 8, 8)
    assert torch.equal(batch["target"], next(DeviceSampler(bank, _plan(), 0, "cpu", PAIRS))[1])
