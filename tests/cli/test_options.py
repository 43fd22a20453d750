"""Tests of the options shared by the inference subcommands (n3net.cli._options)."""

from __future__ import annotations

import argparse

import pytest
import torch

from n3net.cli import _options


@pytest.mark.parametrize(
    "device,low_memory,expected",
    [("cpu", False, True), ("cpu", True, False), ("cuda", False, False), ("meta", False, False)],
)
def test_memory_policy(
    monkeypatch: pytest.MonkeyPatch, device: str, low_memory: bool, expected: bool
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(_options, "retain_freed_memory", lambda: calls.append(True) or True)
    _options.apply_memory_policy(low_memory, torch.device(device))
    assert calls == ([True] if expected else [])


def test_low_memory_flag() -> None:
    parser = argparse.ArgumentParser()
    _options.add_low_memory(parser)
    assert parser.parse_args([]).low_memory is False
    assert parser.parse_args(["--low-memory"]).low_memory is True


@pytest.mark.parametrize("command", ["denoise", "evaluate"])
def test_subcommands_take_low_memory(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from n3net.cli.main import main

    assert main([command, "--help"]) == 0
    assert "--low-memory" in capsys.readouterr().out
