"""Config resolution: defaults, presets, TOML files, --set overrides, direct flags, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from n3net.train.config import RunConfig, default_data_root, parse_set, resolve_config


def test_defaults_are_the_paper_protocol() -> None:
    config = resolve_config()
    assert config.data.preset == "paper"
    assert config.data.train_dirs == ["bsd200", "bsds500_test"]
    assert (config.data.crop_size, config.data.crops_per_image) == (80, 128)
    assert (config.train.batch_size, config.train.epochs) == (32, 50)
    assert (config.train.lr, config.train.lr_final, config.train.weight_decay) == (1e-3, 1e-6, 1e-4)
    assert config.train.betas == [0.9, 0.999]
    assert config.task.loss_scale == 800.0  # the authors' reduction
    assert config.train.lr_hold == 0.5  # hold, then decay: it beat the plain decay


def test_only_denoising_holds_the_lr_by_default() -> None:
    """The hold belongs to the denoising presets; other tasks keep their own schedules."""
    assert resolve_config(sets=["data.preset=dncnn"]).train.lr_hold == 0.5
    assert resolve_config(sets=['task.name="correspondences"']).train.lr_hold == 0.0


def test_saved_configs_without_loss_scale_mean_plain_mse() -> None:
    values = resolve_config().to_dict()
    del values["task"]["loss_scale"]
    assert RunConfig.from_dict(values).task.loss_scale == 1.0


def test_dncnn_preset() -> None:
    config = resolve_config(sets=["data.preset=dncnn"])
    assert config.data.train_dirs == ["bsd400"]
    assert (config.data.crop_size, config.train.batch_size) == (40, 128)


def test_precedence_file_set_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[model]\narch = "dncnn"\n[model.kwargs]\ndepth = 9\n'
        '[data]\npreset = "dncnn"\ncrop_size = 50\nsigma = 50\n'
        "[train]\nbatch_size = 16\nlr = 2e-3\nmax_minutes = 3\n"
    )
    config = resolve_config(
        path,
        sets=["train.batch_size=8", "model.kwargs.features=16", "data.train_dirs=['a', 'b']"],
        overrides={"train": {"batch_size": 4, "lr": None}, "model": {"arch": None}},
    )
    assert config.model.arch == "dncnn"
    assert config.model.kwargs == {"depth": 9, "features": 16}
    assert config.data.crop_size == 50  # file beats preset
    # data.sigma of the older layout moves to the task's table
    assert config.task.sigma == 50.0 and isinstance(config.task.sigma, float)
    assert config.data.train_dirs == ["a", "b"]
    assert config.train.batch_size == 4  # flag beats --set beats file
    assert config.train.lr == 2e-3  # None flags are skipped
    assert config.train.max_minutes == 3.0


def test_round_trip() -> None:
    config = resolve_config(sets=["model.kwargs.k=4", "train.max_steps=10"])
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("train.lr=5e-4", {"train": {"lr": 5e-4}}),
        ("train.out_dir=runs/a b", {"train": {"out_dir": "runs/a b"}}),
        ("train.channels_last=true", {"train": {"channels_last": True}}),
        ("model.kwargs.temperature_at=mean", {"model": {"kwargs": {"temperature_at": "mean"}}}),
    ],
)
def test_parse_set(assignment: str, expected: dict) -> None:
    assert parse_set(assignment) == expected


@pytest.mark.parametrize(
    "sets, message",
    [
        (["nokey"], "--set needs section.key=value"),
        (["foo.bar=1"], "unknown config section 'foo'"),
        (["train.batchsize=1"], "unknown key train.batchsize"),
        (["train.batch_size=abc"], "train.batch_size must be an integer, got 'abc'"),
        (["train.batch_size=0"], "train.batch_size must be > 0, got 0"),
        (["train.amp=fp16"], "train.amp must be one of none, bf16, auto, got 'fp16'"),
        (["data.preset=other"], "data.preset must be one of paper, dncnn"),
        (["data.val_dir=/x/bsd68"], "data.val_dir must not be a test set"),
        (["train.betas=[0.9]"], "train.betas must be two values"),
        (["task.loss_scale=0"], "task.loss_scale must be > 0, got 0"),
        (["data.train_dirs=[]"], "data.train_dirs must name at least one folder"),
    ],
)
def test_errors(sets: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        resolve_config(sets=sets)


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        resolve_config(path)


def test_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("N3NET_DATA", str(tmp_path))
    assert default_data_root() == str(tmp_path)
    config = resolve_config()
    assert config.resolve_path("bsd200") == tmp_path / "bsd200"
    assert config.resolve_path("/abs/dir") == Path("/abs/dir")
    monkeypatch.delenv("N3NET_DATA")
    assert default_data_root() == ""
    config = resolve_config()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="set N3NET_DATA or pass an absolute path"):
        config.resolve_path("bsd200")
    (tmp_path / "bsd200").mkdir()
    assert config.resolve_path("bsd200") == Path("bsd200")  # found from the current folder
