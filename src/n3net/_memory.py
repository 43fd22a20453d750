"""How freed CPU memory goes back to the operating system (glibc only; no-ops elsewhere).

Two opposite needs:

* :func:`trim_cpu_heap` gives the free top of the heap back after a large N3 block (lower peak
  RSS: the block's many medium-sized temporaries otherwise stay with the process).
* :func:`retain_freed_memory` keeps freed memory in the process for reuse. glibc serves each
  large tensor (a 64-channel 1024 x 1024 feature map is 268 MB) with a fresh ``mmap`` and unmaps
  it on free, so every layer's output is page-faulted in again and zeroed by the kernel. On this
  project's 2-core CPU that is about 40 % of a DnCNN-17 forward pass at 1024 x 1024 (12.6 s
  against 7.3 s with the memory retained, ``benchmarks/speed.py --retain-memory``). It is a
  process-wide setting, so the library never calls it; the command line does for CPU inference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

__all__ = ["retain_freed_memory", "trim_cpu_heap"]

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_retained = False


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)
    except (OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim / mallopt)
        return None


def trim_cpu_heap() -> None:
    """Return the free top of glibc's heap to the OS (``malloc_trim(0)``).

    The N3 block's many medium-sized temporaries (below glibc's dynamic mmap threshold) leave
    the heap fragmented, and glibc keeps that memory: without the trim, peak RSS of a 512x512
    N3Net forward pass is about 110 MB higher (benchmarks/speed.py). It costs ~10-20 ms. A no-op
    after :func:`retain_freed_memory`, which asks for the opposite.
    """
    trim = _libc_function("malloc_trim")
    if trim is not None and not _retained:
        trim(0)


def retain_freed_memory() -> bool:
    """Keep freed memory in the process for reuse instead of returning it to the OS.

    Sets glibc's ``M_MMAP_MAX`` to 0 (large blocks come from the heap, not from fresh mappings)
    and ``M_TRIM_THRESHOLD`` to its maximum (the heap is not shrunk), process-wide and for the
    rest of the process. CPU inference on large images gets much faster (see the module
    docstring); peak memory may grow because the heap fragments. Returns whether it took effect
    (False off glibc).
    """
    global _retained
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _retained = _retained or ok
    return ok
