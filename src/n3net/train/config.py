"""Training configuration: dataclasses, presets, a TOML file and command-line overrides.

Values are resolved in this order, each step overriding the one before:

1. the dataclass defaults below (the paper's protocol, ../shared/facts/paper.md §3);
2. the preset (``data.preset``: ``"paper"`` or ``"dncnn"``, see :data:`PRESETS`);
3. a TOML file with ``[model]``, ``[data]`` and ``[train]`` tables (``[model.kwargs]`` holds the
   architecture's keyword arguments);
4. ``--set section.key=value`` overrides, the value read as TOML (``data.train_dirs=["a", "b"]``,
   ``model.kwargs.depth=5``; a value that is not valid TOML is taken as a string);
5. the common direct flags of ``n3net train`` (``--arch``, ``--sigma``, ...).

Example:
    >>> config = resolve_config(sets=["train.batch_size=8", "model.kwargs.depth=5"])
    >>> config.train.batch_size, config.model.kwargs, config.data.crop_size
    (8, {'depth': 5}, 80)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS",
    "TEST_SETS",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "default_data_root",
    "parse_set",
    "resolve_config",
]

# Folders that hold test images: they may never choose checkpoints (no validation on them).
TEST_SETS = ("set12", "bsd68", "urban100", "b100", "set5", "set14")

# Per preset: values for the data and train sections, applied before the file and the overrides.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The paper: the 400 BSDS500 train + test images at full size in grey (the evaluation
    # protocol's conversion), 80x80 crops, 128 per image and epoch [code], batch 32.
    "paper": {
        "data": {"train_dirs": ["bsd200", "bsds500_test"], "crop_size": 80, "crops_per_image": 128},
        "train": {"batch_size": 32},
    },
    # DnCNN's lighter set: the 400 grey 180x180 crops (Train400) cut into 40x40 patches, batch
    # 128, as DnCNN trained (its sigma = 25 model saw about 600 patches per image and epoch).
    "dncnn": {
        "data": {"train_dirs": ["bsd400"], "crop_size": 40, "crops_per_image": 512},
        "train": {"batch_size": 128},
    },
}


def default_data_root() -> str:
    """Return $N3NET_DATA, else ``../shared/data`` beside the repository of this checkout."""
    env = os.environ.get("N3NET_DATA")
    if env:
        return env
    return str(Path(__file__).resolve().parents[3].parent / "shared" / "data")


@dataclass
class ModelConfig:
    """Which network to train: ``create_model(arch, **kwargs)``."""

    arch: str = "n3net"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training images, crops, noise and the held-out validation images.

    Attributes:
        preset: ``"paper"`` or ``"dncnn"``; fills ``train_dirs``, ``crop_size``,
            ``crops_per_image`` and ``train.batch_size`` unless they are set explicitly.
        root: folder that relative ``train_dirs`` and ``val_dir`` are resolved against.
        train_dirs: image folders; each is read in sorted file-name order, RGB images converted to
            grey exactly as the evaluation protocol does (grey images are kept as they are).
        val_images: how many images to hold out for validation: the last ones of the training
            list (never trained on). 0 disables validation unless ``val_dir`` is given.
        val_dir: a separate validation folder instead of held-out images; never a test set.
        crop_size: side of the square training crops.
        crops_per_image: crops drawn per training image and epoch.
        sigma: noise standard deviation on the 0-255 scale.
        sampler: ``"device"`` cuts crops in the training process on the training device (all images
            kept there); ``"loader"`` cuts them in DataLoader worker processes on the CPU.
    """

    preset: str = "paper"
    root: str = field(default_factory=default_data_root)
    train_dirs: list[str] = field(default_factory=lambda: ["bsd200", "bsds500_test"])
    val_images: int = 8
    val_dir: str | None = None
    crop_size: int = 80
    crops_per_image: int = 128
    sigma: float = 25.0
    sampler: str = "device"


@dataclass
class TrainConfig:
    """Optimisation, budget, precision, logging and checkpoints.

    Attributes:
        batch_size: crops per optimisation step over all processes (split evenly across ranks).
        lr, lr_final: the learning rate decays exponentially from ``lr`` to ``lr_final`` over the
            run: ``lr * (lr_final / lr) ** progress`` ([code]: 1e-3 to 1e-6 over 50 epochs).
        epochs: run length in epochs when neither ``max_steps`` nor ``max_minutes`` is set.
        max_steps: run length in steps (replaces ``epochs``).
        max_minutes: wall-clock budget of the training loop (validation and checkpoints
            included); the lr schedule then follows elapsed time. With ``max_steps`` as well, the
            run ends at whichever comes first and the schedule follows the one nearer its end.
        weight_decay: L2 decay (Adam's coupled form, as the paper) on conv/linear weights and
            normalisation scales only, never on biases.
        amp: ``"none"`` or ``"bf16"`` (autocast; the loss is computed in float32).
        channels_last: convert the model and batches to the channels-last memory format.
        device: ``"auto"`` (cuda when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        workers: DataLoader worker processes for ``sampler = "loader"`` (0: in-process).
        val_every: validate every that many steps (0: only at the end).
        ckpt_every, ckpt_minutes: write ``last.pt`` every that many steps / minutes (0: off);
            one is always written at the end.
        log_every: write a CSV row (and TensorBoard scalars) every that many steps.
        progress: ``"auto"`` (a bar on a terminal, else a line every 30 s), ``"bar"``,
            ``"lines"`` or ``"none"``.
        sync_bn: use SyncBatchNorm under DDP (CUDA only); by default every process normalises
            with its own batch statistics, as plain BatchNorm does.
    """

    batch_size: int = 32
    lr: float = 1e-3
    lr_final: float = 1e-6
    epochs: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    seed: int = 0
    amp: str = "none"
    channels_last: bool = False
    device: str = "auto"
    workers: int = 0
    val_every: int = 1000
    ckpt_every: int = 1000
    ckpt_minutes: float = 5.0
    log_every: int = 50
    out_dir: str = "runs/train"
    tensorboard: bool = True
    progress: str = "auto"
    sync_bn: bool = False


@dataclass
class RunConfig:
    """The whole configuration of one training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return plain nested dicts (for JSON, checkpoints and weight metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build a config from nested dicts such as :meth:`to_dict` returns."""
        config = cls()
        _apply(config, values, origin="dict")
        config.validate()
        return config

    def validate(self) -> None:
        """Check values; raise a one-line ValueError naming the field and the value."""
        data, train = self.data, self.train
        _choice("data.preset", data.preset, tuple(PRESETS))
        _choice("data.sampler", data.sampler, ("device", "loader"))
        _choice("train.amp", train.amp, ("none", "bf16"))
        _choice("train.progress", train.progress, ("auto", "bar", "lines", "none"))
        positive = {
            "data.crop_size": data.crop_size,
            "data.crops_per_image": data.crops_per_image,
            "train.batch_size": train.batch_size,
            "train.epochs": train.epochs,
            "train.lr": train.lr,
            "train.lr_final": train.lr_final,
            "train.log_every": train.log_every,
        }
        if train.max_steps is not None:
            positive["train.max_steps"] = train.max_steps
        if train.max_minutes is not None:
            positive["train.max_minutes"] = train.max_minutes
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        non_negative = {
            "data.val_images": data.val_images,
            "data.sigma": data.sigma,
            "train.weight_decay": train.weight_decay,
            "train.workers": train.workers,
            "train.val_every": train.val_every,
            "train.ckpt_every": train.ckpt_every,
            "train.ckpt_minutes": train.ckpt_minutes,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if len(train.betas) != 2 or not all(0 <= beta < 1 for beta in train.betas):
            raise ValueError(f"train.betas must be two values in [0, 1), got {train.betas}")
        if not data.train_dirs:
            raise ValueError("data.train_dirs must name at least one folder")
        if not train.out_dir:
            raise ValueError("train.out_dir must not be empty")
        if data.val_dir is not None and Path(data.val_dir).name.lower() in TEST_SETS:
            raise ValueError(
                f"data.val_dir must not be a test set (they may not choose checkpoints), "
                f"got {data.val_dir}"
            )

    def resolve_path(self, path: str) -> Path:
        """Resolve a data folder: absolute as given, relative under ``data.root``."""
        return Path(self.data.root).expanduser() / Path(path).expanduser()


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _coerce(name: str, value: Any, current: Any, annotation: str) -> Any:
    """Check and convert a value for a dataclass field (TOML ints become floats, etc.)."""
    if value is None:
        if "None" not in annotation:
            raise ValueError(f"{name} must not be empty")
        return None
    if "float" in annotation and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if "int" in annotation and "float" not in annotation and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name} must be an integer, got {value}")
        return int(value)
    expected = {
        "bool": (bool, "true or false"),
        "str": (str, "a string"),
        "int": (int, "an integer"),
        "float": (float, "a number"),
        "list": (list, "a list"),
    }
    for word, (kind, description) in expected.items():
        if annotation.startswith(word):
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if not ok:
                raise ValueError(f"{name} must be {description}, got {value!r}")
            break
    if isinstance(current, list) and isinstance(value, list):
        return list(value)
    return value


def _apply(config: RunConfig, values: Mapping[str, Any], origin: str) -> None:
    """Set fields of ``config`` from nested dicts; unknown sections or keys are errors."""
    for section_name, section_values in values.items():
        section = getattr(config, section_name, None)
        if not dataclasses.is_dataclass(section) or not isinstance(section_values, Mapping):
            raise ValueError(f"unknown config section {section_name!r} in {origin}")
        fields = {f.name: f for f in dataclasses.fields(section)}
        for key, value in section_values.items():
            if key not in fields:
                known = ", ".join(fields)
                raise ValueError(f"unknown key {section_name}.{key} in {origin} (known: {known})")
            name = f"{section_name}.{key}"
            annotation = str(fields[key].type)
            if name == "model.kwargs":
                if not isinstance(value, Mapping):
                    raise ValueError(f"model.kwargs must be a table, got {value!r}")
                config.model.kwargs.update(value)
                continue
            setattr(section, key, _coerce(name, value, getattr(section, key), annotation))


def parse_set(assignment: str) -> dict[str, Any]:
    """Turn ``"section.key=value"`` into nested dicts; the value is read as TOML when it can be.

    Example:
        >>> parse_set("model.kwargs.depth=5")
        {'model': {'kwargs': {'depth': 5}}}
        >>> parse_set("train.out_dir=runs/x")
        {'train': {'out_dir': 'runs/x'}}
    """
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ValueError(f"--set needs section.key=value, got {assignment!r}")
    try:
        value: Any = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Deep-merge nested dicts (later values win)."""
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def resolve_config(
    path: str | os.PathLike | None = None,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunConfig:
    """Build a run's config from defaults, the preset, a TOML file, ``--set`` and direct flags.

    Args:
        path: TOML file with ``[model]``, ``[data]``, ``[train]`` tables, or None.
        sets: ``"section.key=value"`` assignments, applied in order.
        overrides: nested dicts from direct flags, applied last (None values are skipped).
    Returns:
        The validated config.
    """
    merged: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as file:
            try:
                _merge(merged, tomllib.load(file))
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    for assignment in sets:
        _merge(merged, parse_set(assignment))
    for section, values in (overrides or {}).items():
        _merge(merged, {section: {k: v for k, v in values.items() if v is not None}})
    config = RunConfig()
    preset = merged.get("data", {}).get("preset", config.data.preset)
    _choice("data.preset", preset, tuple(PRESETS))
    _apply(config, PRESETS[preset], origin=f"preset {preset}")
    _apply(config, merged, origin=str(path) if path is not None else "overrides")
    config.validate()
    return config
