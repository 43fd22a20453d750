"""Which precision a training run computes in: bf16 autocast only where the hardware has it.

bf16 autocast roughly halves a training step on a CPU with AVX512-BF16 or AMX and on a recent
GPU; on a CPU without them (AVX2 only, say) oneDNN emulates bf16 and a step takes about
12 times as long as in float32 (VDSR, batch 8 of 80×80, one thread of an AVX2 EPYC: 53 s
against 4.2 s). ``train.amp = "auto"`` therefore picks bf16 only where it is native.

Example:
    >>> cpuinfo = "processor : 0\\nflags : fpu avx2 avx512f avx512_bf16\\n"
    >>> cpu_has_native_bf16(cpuinfo)
    True
    >>> cpu_has_native_bf16("flags : fpu sse2 avx2\\n")
    False
    >>> resolve_amp("none", torch.device("cpu"))
    'none'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names (Linux)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX), from ``/proc/cpuinfo``.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``; read from the system when None. Where it cannot
            be read (not Linux), the answer is False.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and _NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast on ``device`` runs in hardware rather than emulated."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no including_emulation (and counts no emulation)
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_amp(amp: str, device: torch.device) -> Literal["none", "bf16"]:
    """``train.amp`` as the run computes: ``auto`` is bf16 where native, else none."""
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    if amp not in ("none", "bf16"):
        raise ValueError(f"train.amp must be none, bf16 or auto, got {amp!r}")
    return amp  # type: ignore[return-value]


def emulated_bf16_warning(amp: str, device: torch.device) -> str | None:
    """A one-line warning when bf16 autocast was asked for on hardware that emulates it."""
    if amp != "bf16" or native_bf16(device):
        return None
    what = (
        "this CPU has neither AVX512-BF16 nor AMX"
        if device.type == "cpu"
        else (f"{device} has no native bf16")
    )
    return (
        f"warning: {what}, so bf16 autocast is emulated and much slower than float32; "
        "use --amp auto or --amp none"
    )
