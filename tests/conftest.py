"""Shared fixtures: devices, dtypes, the benchmark data folder ($N3NET_DATA), seeding.

Long integration tests carry ``@pytest.mark.slow`` (declared in pyproject.toml). They run by
default, in CI too; ``python -m pytest -m "not slow"`` leaves them out for a quick local check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

_DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=_DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture
def shared_data() -> Path:
    """The benchmark image sets (``set12/``, ...): the folder named by $N3NET_DATA."""
    value = os.environ.get("N3NET_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("set N3NET_DATA to the folder of the benchmark sets to run this test")
    return Path(value)
