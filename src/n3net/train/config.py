"""Training configuration: dataclasses, the task's defaults and presets, TOML and flags.

Values are resolved in this order, each step overriding the one before:

1. the dataclass defaults below (the paper's denoising protocol);
2. the task's defaults (:attr:`n3net.train.tasks.Task.defaults`; ``task.name`` picks the task);
3. the task's preset (``data.preset``, e.g. ``"paper"`` or ``"dncnn"`` for ``denoise``);
4. a TOML file with ``[model]``, ``[data]``, ``[train]`` and ``[task]`` tables
   (``[model.kwargs]`` holds the architecture's keyword arguments);
5. ``--set section.key=value`` overrides, the value read as TOML (``data.train_dirs=["a", "b"]``,
   ``model.kwargs.depth=5``; a value that is not valid TOML is taken as a string);
6. the flags of ``n3net train``, one per field (:func:`n3net.train.fields.add_flags`).

Every value is checked against its field's type hint (:func:`n3net.train.fields.convert`).
Configs of older layouts (a checkpoint's, a file's) are upgraded by the task
(:meth:`~n3net.train.tasks.Task.upgrade`).

Relative data folders resolve under ``data.root``, which defaults to ``$N3NET_DATA``.

Example:
    >>> config = resolve_config(sets=["train.batch_size=8", "model.kwargs.depth=5"])
    >>> config.train.batch_size, config.model.kwargs, config.data.crop_size, config.task.name
    (8, {'depth': 5}, 80, 'denoise')
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from n3net.train.fields import convert, section_hints
from n3net.train.tasks import DEFAULT_TASK, TaskConfig, task_class

__all__ = [
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


def default_data_root() -> str:
    """Return ``$N3NET_DATA``, or ``""`` when it is not set (relative folders then fail)."""
    return os.environ.get("N3NET_DATA", "")


@dataclass
class ModelConfig:
    """Which network to train: ``create_model(arch, **kwargs)``.

    Attributes:
        arch: architecture name (``n3net models`` lists them), e.g. dncnn, n3net.
        kwargs: the architecture's keyword arguments (``--set model.kwargs.depth=17``).
    """

    arch: str = "n3net"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the training and validation data are and how image crops are drawn.

    Attributes:
        preset: a named set of data and batch values of the task (denoise: paper, dncnn); fills
            train_dirs, crop_size, crops_per_image and train.batch_size unless they are set.
        root: folder that relative train_dirs and val_dir are resolved against
            ($N3NET_DATA by default).
        train_dirs: image folders; each is read in sorted file-name order, RGB images converted to
            grey exactly as the evaluation protocol does (grey images are kept as they are).
        val_images: how many images to hold out for validation: the last ones of the training
            list (never trained on). 0 disables validation unless val_dir is given.
        val_dir: a separate validation folder instead of held-out images; never a test set.
        crop_size: side of the square training crops.
        crops_per_image: crops drawn per training image and epoch.
        sampler: device cuts crops in the training process on the training device (all images
            kept there); loader cuts them in DataLoader worker processes on the CPU.
    """

    preset: str | None = None
    root: str = field(default_factory=default_data_root, metadata={"flag": "data-root"})
    train_dirs: list[str] = field(default_factory=lambda: ["bsd200", "bsds500_test"])
    val_images: int = 8
    val_dir: str | None = None
    crop_size: int = 80
    crops_per_image: int = 128
    sampler: Literal["device", "loader"] = "device"


@dataclass
class TrainConfig:
    """Optimisation, budget, precision, logging and checkpoints.

    Attributes:
        batch_size: samples per optimisation step over all processes (split evenly across ranks).
        lr, lr_final: learning rate; denoise decays it exponentially from lr to lr_final over
            the run, lr * (lr_final / lr) ** progress ([code]: 1e-3 to 1e-6 over 50 epochs).
        lr_hold: share of the run (0 to < 1) at the constant lr before the decay starts; the
            decay then spans the rest of the run.
        epochs: run length in epochs when neither max_steps nor max_minutes is set.
        max_steps: run length in steps (replaces epochs).
        max_minutes: time budget of the training steps (validation and checkpoints do not
            count); the step time measured over steps 10-30 turns it into a step budget, which
            the run and the lr schedule then follow. With max_steps as well, the run ends at
            whichever comes first and the schedule follows the one nearer its end.
        weight_decay: L2 decay (Adam's coupled form, as the paper) on conv/linear weights and
            normalisation scales only, never on biases.
        betas: Adam's two moment coefficients.
        seed: seed of the initialisation and of the data stream.
        amp: none, bf16 (autocast; the loss is computed in float32) or auto (bf16 where the
            device computes it natively: CUDA with bf16, a CPU with AVX512-BF16 or AMX; none
            elsewhere, where emulated bf16 is many times slower than float32). The run
            records the precision it resolved to.
        channels_last: convert the model and its image inputs to the channels-last memory format.
        device: auto (cuda when available), cpu, cuda or cuda:N.
        workers: DataLoader worker processes for data.sampler = loader (0: in-process).
        val_every: validate every that many steps (0: only at the end).
        ckpt_every, ckpt_minutes: write last.pt every that many steps / minutes (0: off);
            one is always written at the end.
        log_every: write a CSV row (and TensorBoard scalars) every that many steps.
        out_dir: the run folder.
        tensorboard: write TensorBoard scalars (when tensorboard is installed).
        progress: auto (a bar on a terminal, else a line every 30 s), bar, lines or none.
        sync_bn: use SyncBatchNorm under DDP (CUDA only); by default every process normalises
            with its own batch statistics, as plain BatchNorm does.
    """

    batch_size: int = 32
    lr: float = 1e-3
    lr_final: float = 1e-6
    lr_hold: float = 0.0
    epochs: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    seed: int = 0
    amp: Literal["none", "bf16", "auto"] = "none"
    channels_last: bool = False
    device: str = "auto"
    workers: int = 0
    val_every: int = 1000
    ckpt_every: int = 1000
    ckpt_minutes: float = 5.0
    log_every: int = 50
    out_dir: str = field(default="runs/train", metadata={"flag": "out"})
    tensorboard: bool = True
    progress: Literal["auto", "bar", "lines", "none"] = "auto"
    sync_bn: bool = False


def _default_task() -> TaskConfig:
    return task_class(DEFAULT_TASK).Config()


@dataclass
class RunConfig:
    """The whole configuration of one training run: the model, data, training and task."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=_default_task)

    def to_dict(self) -> dict[str, Any]:
        """Return plain nested dicts (for JSON, checkpoints and weight metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build a config from nested dicts such as :meth:`to_dict` returns (older layouts too)."""
        values = copy.deepcopy(dict(values))
        task = task_class(_task_name(values))
        values = task.upgrade(values)
        config = cls(task=task.Config(name=task.name))
        _apply(config, values, origin="dict")
        config.validate()
        return config

    def validate(self) -> None:
        """Check every value; raise a one-line ValueError naming the field and the value."""
        for section_name in ("model", "data", "train", "task"):
            section = getattr(self, section_name)
            for key, hint in section_hints(type(section)).items():
                convert(f"{section_name}.{key}", getattr(section, key), hint)
        data, train = self.data, self.train
        presets = task_class(self.task.name).presets
        if data.preset is not None and data.preset not in presets:
            known = ", ".join(presets) or "none"
            raise ValueError(f"data.preset must be one of {known}, got {data.preset!r}")
        positive = {
            "data.crop_size": data.crop_size,
            "data.crops_per_image": data.crops_per_image,
            "train.batch_size": train.batch_size,
            "train.epochs": train.epochs,
            "train.lr": train.lr,
            "train.lr_final": train.lr_final,
            "train.log_every": train.log_every,
            "train.max_steps": train.max_steps,
            "train.max_minutes": train.max_minutes,
        }
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        non_negative = {
            "data.val_images": data.val_images,
            "train.weight_decay": train.weight_decay,
            "train.workers": train.workers,
            "train.val_every": train.val_every,
            "train.ckpt_every": train.ckpt_every,
            "train.ckpt_minutes": train.ckpt_minutes,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0 <= train.lr_hold < 1:
            raise ValueError(f"train.lr_hold must be in [0, 1), got {train.lr_hold}")
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
        self.task.validate()

    def resolve_path(self, path: str) -> Path:
        """Resolve a data folder: absolute as given, relative under ``data.root``.

        Raises:
            FileNotFoundError: for a relative folder when ``data.root`` is not set and the folder
                is not found from the current directory either.
        """
        folder = Path(path).expanduser()
        if folder.is_absolute():
            return folder
        if self.data.root:
            return Path(self.data.root).expanduser() / folder
        if not folder.exists():
            raise FileNotFoundError(
                f"data folder {path!r} not found: set N3NET_DATA or pass an absolute path"
            )
        return folder


def _task_name(values: Mapping[str, Any]) -> str:
    task = values.get("task", {})
    name = task.get("name", DEFAULT_TASK) if isinstance(task, Mapping) else task
    if not isinstance(name, str):
        raise ValueError(f"task.name must be a string, got {name!r}")
    return name


def _apply(config: RunConfig, values: Mapping[str, Any], origin: str) -> None:
    """Set fields of ``config`` from nested dicts; unknown sections or keys are errors."""
    for section_name, section_values in values.items():
        section = getattr(config, section_name, None)
        if not dataclasses.is_dataclass(section) or not isinstance(section_values, Mapping):
            raise ValueError(f"unknown config section {section_name!r} in {origin}")
        hints = section_hints(type(section))
        for key, value in section_values.items():
            if key not in hints:
                known = ", ".join(hints)
                raise ValueError(f"unknown key {section_name}.{key} in {origin} (known: {known})")
            setattr(section, key, convert(f"{section_name}.{key}", value, hints[key]))


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
            into[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value


def resolve_config(
    path: str | os.PathLike | None = None,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunConfig:
    """Build a run's config from defaults, the task, its preset, a TOML file, ``--set`` and flags.

    Args:
        path: TOML file with ``[model]``, ``[data]``, ``[train]``, ``[task]`` tables, or None.
        sets: ``"section.key=value"`` assignments, applied in order.
        overrides: nested dicts from flags, applied last (None values are skipped).
    Returns:
        The validated config.
    """
    user: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as file:
            try:
                _merge(user, tomllib.load(file))
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    for assignment in sets:
        _merge(user, parse_set(assignment))
    for section, values in (overrides or {}).items():
        _merge(user, {section: {k: v for k, v in values.items() if v is not None}})
    task = task_class(_task_name(user))
    user = task.upgrade(user)
    merged: dict[str, Any] = {}
    _merge(merged, task.defaults)
    preset = user.get("data", {}).get("preset", merged.get("data", {}).get("preset"))
    if preset is None and task.presets:
        preset = next(iter(task.presets))  # the first is the task's default
    if preset is not None:
        if preset not in task.presets:
            known = ", ".join(task.presets) or "none"
            raise ValueError(f"data.preset must be one of {known}, got {preset!r}")
        _merge(merged, task.presets[preset])
        _merge(merged, {"data": {"preset": preset}})
    config = RunConfig(task=task.Config(name=task.name))
    _apply(config, merged, origin=f"task {task.name} defaults and preset {preset}")
    _apply(config, user, origin=str(path) if path is not None else "overrides")
    config.validate()
    return config
