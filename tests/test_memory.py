"""Tests of n3net._memory: trimming and retaining freed CPU memory (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from n3net._memory import _libc_function, trim_cpu_heap


def test_trim_cpu_heap_is_safe_to_call() -> None:
    trim_cpu_heap()
    trim_cpu_heap()


# A fresh interpreter (the setting is process-wide) runs a small DnCNN at 512 x 512, whose
# 64-channel feature maps (67 MB) are above glibc's largest dynamic mmap threshold (32 MB), and
# counts the minor page faults of a forward pass (the fewest of four after a warm-up: the heap
# may still grow in the first ones).
_PROBE = """
import resource, sys, torch
from n3net import _memory
from n3net.models import create_model
if sys.argv[1] == "retain":
    assert _memory.retain_freed_memory()
    _memory.trim_cpu_heap()  # must not undo it
torch.set_num_threads(1)
net = create_model("dncnn", depth=3).eval()
x = torch.rand(1, 1, 512, 512)
faults = []
with torch.inference_mode():
    net(x)
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults))
"""


@pytest.mark.skipif(_libc_function("mallopt") is None, reason="needs glibc")
def test_retain_freed_memory_avoids_page_faults() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout.split()[-1])

    feature_map = (64 * 512 * 512 * 4) // 4096  # 16,384 pages of 4 KiB
    assert faults("default") > 2 * feature_map  # every feature map is a fresh mapping
    assert faults("retain") < feature_map // 8  # freed blocks are reused
