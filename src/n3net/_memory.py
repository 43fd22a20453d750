"""Give freed CPU memory back to the operating system after large inference steps."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["trim_cpu_heap"]


@functools.cache
def _malloc_trim():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def trim_cpu_heap() -> None:
    """Return the free top of glibc's heap to the OS (``malloc_trim(0)``); no-op elsewhere.

    The N3 block's many medium-sized temporaries (below glibc's dynamic mmap threshold) leave
    the heap fragmented, and glibc keeps that memory: without the trim, peak RSS of a 512x512
    N3Net forward pass is about 110 MB higher (benchmarks/speed.py). It costs ~10-20 ms.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
