"""`n3net train` in-process: config printing, a tiny run, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from n3net.cli.main import main

_TINY = [
    "--arch", "dncnn", "--set", "model.kwargs.depth=3", "--set", "model.kwargs.features=8",
    "--set", 'data.train_dirs=["imgs"]', "--set", "data.val_images=2", "--set",
    "data.crop_size=16", "--batch-size", "4", "--device", "cpu", "--set", "train.progress=none",
    "--set", "train.tensorboard=false",
]  # fmt: skip


def test_print_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\narch = "n3net-light"\n[train]\nlr = 5e-4\n')
    argv = [
        "train", "--config", str(toml), "--preset", "dncnn", "--sigma", "50", "--max-minutes",
        "2", "--amp", "bf16", "--channels-last", "--out", "x", "--print-config",
    ]  # fmt: skip
    assert main(argv) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["model"]["arch"] == "n3net-light"
    assert config["data"]["train_dirs"] == ["bsd400"] and config["task"]["sigma"] == 50.0
    assert config["train"]["lr"] == 5e-4 and config["train"]["max_minutes"] == 2.0
    assert config["train"]["amp"] == "bf16" and config["train"]["channels_last"] is True
    assert config["train"]["out_dir"] == "x"


def test_tiny_run_and_refused_overwrite(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", *_TINY, "--data-root", str(tiny_root), "--max-steps", "3", "--out", str(out)]
    assert main(argv) == 0
    assert "dncnn: 3 steps" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("n3net: error:") and "pass --overwrite" in err and "\n" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "train.lr=-1"], "train.lr must be > 0, got -1.0"),
        (["--data-root", "/nonexistent"], "training folder not found: /nonexistent/imgs"),
        (["--arch", "nope"], "unknown architecture 'nope'"),
        (["--device", "cuda:7"], "CUDA is not available"),
        (["--resume", "/nonexistent/last.pt"], "checkpoint not found"),
        (["--task", "nope"], "task.name must be one of"),
        (["--sigma", "-5"], "task.sigma must be >= 0, got -5.0"),
        (["--preset", "other"], "data.preset must be one of paper, dncnn, got 'other'"),
    ],
)
def test_errors(
    extra: list[str], message: str, tiny_root: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import torch

    if "cuda:7" in extra and torch.cuda.is_available():
        pytest.skip("CUDA present")
    argv = ["train", *_TINY, "--data-root", str(tiny_root), "--max-steps", "1"]
    assert main([*argv, "--out", str(tmp_path / "e"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_building_the_parser_imports_no_torch() -> None:
    """`n3net --help` stays fast: the train flags come from torch-free config classes."""
    import subprocess
    import sys

    code = (
        "import sys; from n3net.cli.main import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_relative_data_needs_a_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("N3NET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    argv = ["train", *_TINY, "--max-steps", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "n3net: error: data folder 'imgs' not found: set N3NET_DATA or pass an absolute path"
    )
    assert not (tmp_path / "r").exists()  # nothing written


def test_bad_flag_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--batch-size", "x"]) == 2
    assert capsys.readouterr().err == (
        "n3net train: error: argument --batch-size: invalid int value: 'x' "
        "(see n3net train --help)\n"
    )
    assert main(["train", "--nope"]) == 2
    assert capsys.readouterr().err == (
        "n3net train: error: unrecognized arguments: --nope (see n3net train --help)\n"
    )
