"""Options shared by the inference subcommands (denoise, evaluate)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from n3net._memory import retain_freed_memory

if TYPE_CHECKING:  # the CLI imports torch only once a subcommand runs
    import torch


def add_low_memory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--low-memory",
        action="store_true",
        help="give freed memory back to the OS between layers: lower peak memory, but CPU "
        "inference on large images is much slower (by default n3net keeps freed memory for "
        "reuse when it runs on the CPU)",
    )


def apply_memory_policy(low_memory: bool, device: torch.device) -> None:
    """On the CPU, keep freed memory for reuse unless ``--low-memory`` (see n3net._memory)."""
    if device.type == "cpu" and not low_memory:
        retain_freed_memory()
