"""Tests of n3net._memory: trimming and retaining freed CPU memory (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from n3net._memory import _libc_function

# A fresh interpreter (torch loaded, as in real use) fills 200 MB of the heap with 64 KiB blocks
# (below glibc's mmap threshold, so they come from the heap) and frees every other one: 100 MB of
# holes between live blocks, which free() cannot give back on its own (it only shrinks the top of
# the heap). It prints how many MiB trim_cpu_heap() returns to the OS (RSS before minus after).
_TRIM_PROBE = """
import ctypes, os, sys
import torch
from n3net import _memory
malloc, free = _memory._libc_function("malloc"), _memory._libc_function("free")
malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if sys.argv[1] == "retain":
    assert _memory.retain_freed_memory()
size = 64 * 1024
blocks = [malloc(size) for _ in range(3200)]
for block in blocks:
    ctypes.memset(block, 1, size)
for block in blocks[::2]:
    free(block)
before = rss()
_memory.trim_cpu_heap()
_memory.trim_cpu_heap()  # a second call is harmless
print((before - rss()) // 2**20)
"""


def _probe(code: str, mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(_libc_function("malloc_trim") is None, reason="needs glibc")
def test_trim_cpu_heap_returns_freed_heap() -> None:
    assert _probe(_TRIM_PROBE, "default") >= 80  # of the 100 MB of holes (93 measured)
    assert _probe(_TRIM_PROBE, "retain") <= 2  # retain_freed_memory() turns the trim off


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
@pytest.mark.slow
def test_retain_freed_memory_avoids_page_faults() -> None:
    def faults(mode: str) -> int:
        return _probe(_PROBE, mode)

    feature_map = (64 * 512 * 512 * 4) // 4096  # 16,384 pages of 4 KiB
    assert faults("default") > 2 * feature_map  # every feature map is a fresh mapping
    assert faults("retain") < feature_map // 8  # freed blocks are reused
