"""Shared fixtures: devices, dtypes, the shared data folder, seeding, and `@pytest.mark.slow`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

_DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked slow unless N3NET_SLOW=1."""
    if os.environ.get("N3NET_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set N3NET_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=_DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared image sets: $N3NET_DATA, else ../shared/data beside the repository."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = Path(os.environ.get("N3NET_DATA") or default)
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path
