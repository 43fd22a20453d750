"""What a finished run leaves in its folder (rank 0): weights, curves and a summary.

``last.safetensors`` holds the final weights and ``model.safetensors`` the best validated ones
(the final ones without validation), each with metadata: the task's entries
(:meth:`~n3net.train.tasks.Task.metadata`, e.g. ``sigma``) and the run's (steps, batch size,
minutes, hardware, torch, and ``recipe``: the optimiser, decay, lr schedule, seed and model
options in words). ``curves.png`` plots the log; ``summary.json`` sums the run up.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from n3net.train.logs import plot_curves
from n3net.train.tasks import Task

if TYPE_CHECKING:
    from n3net.train.optim import Optimisation
    from n3net.train.state import RunState

__all__ = ["hardware", "recipe", "write_outputs"]


def hardware(device: torch.device, world_size: int) -> str:
    """Name the hardware a run used, e.g. ``2 x NVIDIA H200`` or ``CPU <model>, 4 threads``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        if Path("/proc/cpuinfo").is_file():
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        threads = torch.get_num_threads()
        name = f"CPU {name}, {threads} thread{'' if threads == 1 else 's'}"
    return f"{world_size} x {name}" if world_size > 1 else name


def recipe(optimisation: Optimisation, seed: int, model_kwargs: dict) -> str:
    """How a run optimised, in words: the optimisation, the seed and the model's options.

    Example:
        >>> import torch
        >>> from n3net.train.optim import HoldExponentialSchedule, Optimisation
        >>> adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        >>> recipe(Optimisation(adam, HoldExponentialSchedule(1e-3, 1e-3, 0.0)), 0, {"k": 3})
        'Adam (betas 0.9, 0.999), no weight decay, constant lr 0.001, seed 0, model options k=3'
    """
    text = f"{optimisation.describe()}, seed {seed}"
    if model_kwargs:
        text += ", model options " + ", ".join(f"{k}={v}" for k, v in model_kwargs.items())
    return text


def write_outputs(
    run: RunState,
    task: Task,
    model: nn.Module,
    hardware: str,
    optimisation: Optimisation | None = None,
) -> None:
    """Write the final and best weights, the curves and ``summary.json``; print one line."""
    from n3net.models import save_model

    config, out_dir, metric = run.config, run.out_dir, task.metric
    metadata = {
        "task": task.name,
        **task.metadata(),
        "steps": str(run.step),
        "batch_size": str(config.train.batch_size),
        "minutes": f"{run.elapsed / 60:.2f}",
        "hardware": hardware,
        "torch": torch.__version__,
    }
    if optimisation is not None:
        metadata["recipe"] = recipe(optimisation, config.train.seed, config.model.kwargs)
    save_model(model, out_dir / "last.safetensors", {**metadata, "weights": "last"})
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
        metadata.update(weights=f"best validation (step {run.best_step})")
        metadata[metric] = f"{run.best:.3f}"
    else:
        metadata["weights"] = "last"
    save_model(model, out_dir / "model.safetensors", metadata)
    plot_curves(out_dir / "log.csv", out_dir / "curves.png", title=config.model.arch, metric=metric)
    summary = {
        "arch": config.model.arch,
        "task": task.name,
        "steps": run.step,
        "skipped_steps": run.skipped,
        "minutes": round(run.elapsed / 60, 3),
        f"best_{metric}": run.best,
        "best_step": run.best_step,
        f"last_{metric}": run.last_val,
        "hardware": hardware,
        "amp": config.train.amp,
        **task.summary(),
        "imgs_per_s": round(run.step * config.train.batch_size / max(run.elapsed, 1e-9), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    best = "n/a" if run.best is None else f"{metric} {run.best:.3f} (step {run.best_step})"
    print(
        f"{config.model.arch}: {run.step} steps in {run.elapsed / 60:.2f} min, best validation "
        f"{best}; weights in {out_dir / 'model.safetensors'}",
        flush=True,
    )
