"""bf16 autocast only where the hardware has it: the CPU flag check, ``auto`` and the warning."""

from __future__ import annotations

import pytest
import torch

from n3net.train import precision
from n3net.train.precision import cpu_has_native_bf16, emulated_bf16_warning, resolve_amp

AVX2_EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
CPU = torch.device("cpu")


def test_the_flag_line_decides() -> None:
    assert not cpu_has_native_bf16(AVX2_EPYC)
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS)
    assert cpu_has_native_bf16("flags : avx512f avx512_bf16\n")  # Cooper Lake, Zen 4
    assert cpu_has_native_bf16("flags : amx_bf16\n")
    # the names must be whole flags of the flags line, not parts of other words or lines
    assert not cpu_has_native_bf16("flags : avx512f avx512_bf16x\n")
    assert not cpu_has_native_bf16("model name : avx512_bf16 emulator\nflags : avx2\n")
    assert not cpu_has_native_bf16("")


@pytest.mark.parametrize(("native", "resolved"), [(True, "bf16"), (False, "none")])
def test_auto_is_bf16_only_where_native(
    monkeypatch: pytest.MonkeyPatch, native: bool, resolved: str
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_amp("auto", CPU) == resolved
    assert resolve_amp("none", CPU) == "none"
    assert resolve_amp("bf16", CPU) == "bf16"  # asked for explicitly: kept, with a warning
    assert (emulated_bf16_warning("bf16", CPU) is None) == native
    assert emulated_bf16_warning("none", CPU) is None


def test_the_warning_is_one_line_naming_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    warning = emulated_bf16_warning("bf16", CPU)
    assert warning is not None and "\n" not in warning
    assert "AVX512-BF16" in warning and "--amp auto" in warning


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="train.amp must be none, bf16 or auto, got 'fp16'"):
        resolve_amp("fp16", CPU)
