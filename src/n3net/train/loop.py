"""The training loop: any task (:mod:`n3net.train.tasks`), resumable, one or several processes.

One step: the task's next batch, the task's loss of it through the model (under bf16 autocast
with ``train.amp = "bf16"``, in the channels-last format with ``train.channels_last``), the
backward pass, the task's gradient clip if any, one optimiser step at the lr of the task's
schedule. A step with a non-finite loss or gradient is skipped. Every ``train.val_every`` steps
rank 0 validates (the task's metric picks the best weights); ``last.pt`` is written atomically
on schedule and at the end; the run folder gets the final and the best weights, a CSV log,
curves and a summary.

The budget is ``train.max_steps``, ``train.max_minutes`` or ``train.epochs`` of the task's
epoch; ``progress`` is the fraction of it that is spent, which the schedules follow. A time
budget counts training steps only and becomes a step budget once the step time is measured
(:class:`~n3net.train.state.Budget`).

Nothing here depends on the task: a new task never changes this file.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from n3net.train import distributed as dist_utils
from n3net.train.checkpoint import (
    load_checkpoint,
)
from n3net.train.config import RunConfig
from n3net.train.logs import TrainLog
from n3net.train.optim import GradientClip, Optimisation, Progress
from n3net.train.precision import emulated_bf16_warning, resolve_amp
from n3net.train.state import Budget, RunState
from n3net.train.tasks import Forward, Task, task_class

__all__ = ["TrainResult", "make_forward", "train", "train_step"]

_SYNC_EVERY = 10  # steps between clock broadcasts under DDP
_MAX_SKIPPED_IN_A_ROW = 20  # consecutive non-finite steps before a run gives up


@dataclass
class TrainResult:
    """What a finished run reached: steps, minutes and the best value of the task's metric."""

    out_dir: Path
    steps: int
    minutes: float
    metric: str
    best: float | None
    best_step: int | None


def make_forward(
    model: nn.Module, device: torch.device, amp: bool = False, channels_last: bool = False
) -> Forward:
    """Wrap a model as the loop runs it: 4-D tensor inputs channels-last, bf16 autocast.

    Example:
        >>> forward = make_forward(nn.Conv2d(1, 1, 1), torch.device("cpu"), channels_last=True)
        >>> forward(torch.zeros(1, 1, 4, 4)).shape
        torch.Size([1, 1, 4, 4])
    """

    def forward(*inputs: Any, **kwargs: Any) -> Any:
        if channels_last:
            inputs = tuple(
                x.contiguous(memory_format=torch.channels_last)
                if isinstance(x, Tensor) and x.ndim == 4
                else x
                for x in inputs
            )
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return model(*inputs, **kwargs)

    return forward


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[], Tensor],
    clip: GradientClip | None = None,
    lr: float = 0.0,
) -> Tensor:
    """One optimisation step; returns the detached loss.

    A batch whose loss or gradient is not finite is skipped: parameters, buffers (BatchNorm
    statistics) and optimiser state stay as they were, and the returned loss is NaN so that the
    caller can count it.

    Args:
        model: the model ``compute_loss`` runs (its buffers are restored on a skipped step).
        optimizer: the optimiser of its parameters.
        compute_loss: returns the scalar loss of the batch (the forward pass happens inside).
        clip: changes the gradients before the step, given ``lr``.
        lr: the step's learning rate (for the clip).
    """
    optimizer.zero_grad(set_to_none=True)
    buffers = [b.clone() for b in model.buffers()]  # BN statistics: a few kB
    loss = compute_loss()
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([n.float() for n in torch._foreach_norm(grads)]) if grads else loss[None]
    if not bool(torch.isfinite(loss) & torch.isfinite(norms).all()):
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        return torch.full_like(loss.detach(), math.nan)
    if clip is not None:
        clip([p for p in params if p.grad is not None], lr)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def _validate(task: Task, model: nn.Module, device: torch.device, channels_last: bool) -> dict:
    """The task's validation in eval mode, float32, on the unwrapped model."""
    was_training = model.training
    model.eval()
    values = task.validate(make_forward(model, device, False, channels_last), device)
    model.train(was_training)
    return values


def _check_out_dir(out_dir: Path, resume: str | None, overwrite: bool) -> Path | None:
    """Refuse to clobber finished weights or a checkpoint; return the checkpoint to resume."""
    last = out_dir / "last.pt"
    if (out_dir / "model.safetensors").exists() and not overwrite:
        raise FileExistsError(
            f"{out_dir / 'model.safetensors'} exists; pass --overwrite or choose another --out"
        )
    if resume == "auto":
        return last if last.is_file() and not overwrite else None
    if resume:
        return Path(resume)
    if last.exists() and not overwrite:
        raise FileExistsError(f"{last} exists; pass --resume auto to continue it or --overwrite")
    return None


def _check_resume(state: dict[str, Any], config: RunConfig) -> None:
    """A checkpoint continues only with the same model and the same task options."""
    saved = RunConfig.from_dict(state["config"])
    if (saved.model.arch, saved.model.kwargs) != (config.model.arch, config.model.kwargs):
        raise ValueError(
            f"the checkpoint trains {saved.model.arch} {saved.model.kwargs}, the config asks for "
            f"{config.model.arch} {config.model.kwargs}; resume with the same model"
        )
    if saved.task != config.task:
        raise ValueError(
            f"the checkpoint trains task {vars(saved.task)}, the config asks for "
            f"{vars(config.task)}; resume with the same task options"
        )


def train(config: RunConfig, resume: str | None = None, overwrite: bool = False) -> TrainResult:
    """Train a model on the config's task; resumable, single- or multi-process (torchrun).

    Args:
        config: the run's configuration.
        resume: a checkpoint path, ``"auto"`` (``out_dir/last.pt`` when it exists) or None.
        overwrite: allow replacing finished weights / an existing checkpoint in ``out_dir``.
    Returns:
        Steps and minutes reached and the best validation value (on rank 0; other ranks get the
        same steps).
    """
    info = dist_utils.detect()
    device = dist_utils.resolve_device(config.train.device, info)
    dist_utils.setup(info, device)
    try:
        return _train(config, info, device, resume, overwrite)
    finally:
        dist_utils.cleanup(info)


def _build(config: RunConfig, task: Task, device: torch.device) -> tuple[nn.Module, Optimisation]:
    """Seed the global generators, create the model and the task's optimisation."""
    from n3net.models import create_model

    seed = config.train.seed
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    model = create_model(config.model.arch, **config.model.kwargs).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, task.optimisation(model)


class _Stopped(KeyboardInterrupt):
    """SIGTERM (``kill PID``) or SIGINT arrived: stop, checkpoint, exit."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a checkpointed stop while the steps run.

    A run started in the background (``nohup ... &``) inherits an ignored SIGINT, and ``kill``
    sends SIGTERM: without this, either would end the run without a checkpoint of its last
    steps. The previous handlers come back afterwards; off the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGTERM", "SIGINT")
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}
    for name in names:
        signal.signal(getattr(signal, name), _raise_stop)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _open_log(run: RunState, task: Task, resume_path: Path | None) -> TrainLog:
    """Prepare the run folder (rank 0) and return its log, after the first line."""
    config, out_dir, train = run.config, run.out_dir, run.config.train
    out_dir.mkdir(parents=True, exist_ok=True)
    if run.step == 0 and (out_dir / "tensorboard").is_dir():
        shutil.rmtree(out_dir / "tensorboard")
    for stale in out_dir.glob(".last.pt.*"):  # temporary files of a killed checkpoint write
        stale.unlink(missing_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    log = TrainLog(out_dir, run.step, task.columns, train.tensorboard, train.progress)
    what = f"resuming {resume_path} at step {run.step}" if run.step else "starting"
    log.message(
        f"{what}: {config.model.arch}, {task.describe()}, {run.device} x "
        f"{run.info.world_size}, amp {train.amp}"
    )
    return log


def _train(
    config: RunConfig,
    info: dist_utils.DistInfo,
    device: torch.device,
    resume: str | None,
    overwrite: bool,
) -> TrainResult:
    config = replace(config, train=replace(config.train, amp=resolve_amp(config.train.amp, device)))
    run = RunState(config, info, device)
    resume_path = _check_out_dir(run.out_dir, resume, overwrite)
    if config.train.batch_size % info.world_size:
        raise ValueError(
            f"train.batch_size must divide among {info.world_size} processes, "
            f"got {config.train.batch_size}"
        )
    task = task_class(config.task.name)(config)
    task.load(with_validation=info.is_main)
    model, optimisation = _build(config, task, device)
    if resume_path is not None:
        state = load_checkpoint(resume_path)
        _check_resume(state, config)
        run.restore(state, model, optimisation.optimizer)
        del state
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trained = dist_utils.wrap_model(model, info, device, config.train.sync_bn)
    batches = task.batches(run.step, info.rank, info.world_size, device)
    log = _open_log(run, task, resume_path) if info.is_main else None
    warning = emulated_bf16_warning(config.train.amp, device)
    if log is not None and warning:
        log.message(warning)
    try:
        with _stop_signals_interrupt():
            _Steps(run, task, model, trained, optimisation, log).run(batches)
    except KeyboardInterrupt:
        if info.is_main and run.step > 0:
            run.checkpoint(task, model, optimisation.optimizer)
            if log is not None:
                log.message(f"interrupted: checkpoint of step {run.step} in {run.out_dir}/last.pt")
        raise
    finally:
        batches.close()
        if log is not None:
            log.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result = TrainResult(
        run.out_dir, run.step, run.elapsed / 60, task.metric, run.best, run.best_step
    )
    if info.is_main:
        from n3net.train.outputs import hardware, write_outputs

        write_outputs(run, task, model, hardware(device, info.world_size), optimisation)
    return result


class _Steps:
    """The step loop: schedule, step, loss window, validation, log rows and checkpoints."""

    def __init__(
        self,
        run: RunState,
        task: Task,
        model: nn.Module,
        trained: nn.Module,
        optimisation: Optimisation,
        log: TrainLog | None,
    ) -> None:
        self.run_state, self.task, self.model, self.log = run, task, model, log
        self.optimisation = optimisation
        train = run.config.train
        self.forward = make_forward(trained, run.device, train.amp == "bf16", train.channels_last)
        self.trained = trained
        self.budget = Budget.of(run.config, task.epoch_size)
        self.budget.load(run.budget_state)
        self.loss_sum = torch.zeros((), device=run.device)
        self.loss_count = self.skipped_in_a_row = 0
        self.lr = train.lr

    def run(self, batches: Any) -> None:
        run, train = self.run_state, self.run_state.config.train
        self.clock_start = clock_start = time.perf_counter() - run.elapsed
        self.synced_train_s = run.train_s
        last_ckpt_time = run.elapsed
        self.window_start, self.window_step = run.elapsed, run.step
        while True:
            fraction = self.budget.progress(run.step, self.synced_train_s)
            if fraction >= 1:
                break
            at = Progress(run.step, fraction, run.step / self.budget.epoch_steps)
            self.lr = self.optimisation.schedule(at)
            for group in self.optimisation.optimizer.param_groups:
                group["lr"] = self.lr
            step_start = time.perf_counter()
            batch, step = next(batches), run.step
            step_loss = train_step(
                self.trained,
                self.optimisation.optimizer,
                partial(self.task.loss, self.forward, batch, step),
                self.optimisation.clip,
                self.lr,
            )
            run.step += 1
            self._count(step_loss)
            now = time.perf_counter()
            run.train_s += now - step_start
            run.elapsed = now - clock_start
            self._sync_clock()
            self.budget.observe(run.step, self.synced_train_s)
            run.budget_state = self.budget.state()
            done = self.budget.progress(run.step, self.synced_train_s)
            finished = done >= 1
            validate_now = self.task.has_validation and (
                finished or (train.val_every > 0 and run.step % train.val_every == 0)
            )
            if finished or validate_now or run.step % train.log_every == 0:
                self._row(fraction, validate_now)
                self.window_start, self.window_step = run.elapsed, run.step
            elif self.log is not None and self.loss_count and self.log.progress_due():
                self._progress_between_rows(done)
            due = (train.ckpt_every > 0 and run.step % train.ckpt_every == 0) or (
                train.ckpt_minutes > 0 and run.elapsed - last_ckpt_time >= train.ckpt_minutes * 60
            )
            if run.info.is_main and (due or finished):
                run.checkpoint(self.task, self.model, self.optimisation.optimizer)
                last_ckpt_time = run.elapsed

    def _progress_between_rows(self, fraction: float) -> None:
        """Show the steps since the last log row (this process's mean loss; no reduction)."""
        run, train = self.run_state, self.run_state.config.train
        window = max(run.elapsed - self.window_start, 1e-9)
        rate = (run.step - self.window_step) * train.batch_size / window
        loss = float(self.loss_sum) / self.loss_count
        assert self.log is not None
        self.log.progress(fraction, run.step, loss, self.lr, rate)

    def _count(self, step_loss: Tensor) -> None:
        """Add a step's loss to the window, or count it as skipped (and give up after many)."""
        run = self.run_state
        if bool(torch.isfinite(step_loss)):
            self.loss_sum += step_loss
            self.loss_count += 1
            self.skipped_in_a_row = 0
            return
        run.skipped += 1
        self.skipped_in_a_row += 1
        if self.log is not None:
            self.log.message(
                f"step {run.step}: skipped, non-finite loss or gradient "
                f"({run.skipped} skipped so far)"
            )
        if self.skipped_in_a_row >= _MAX_SKIPPED_IN_A_ROW:
            raise RuntimeError(
                f"{self.skipped_in_a_row} steps in a row had a non-finite loss or gradient "
                f"(last at step {run.step}); lower train.lr or use train.amp='none'"
            )

    def _sync_clock(self) -> None:
        """Under DDP every rank follows rank 0's training clock (so that all stop at one step)."""
        run = self.run_state
        if not run.info.distributed:
            self.synced_train_s = run.train_s
        elif run.step % _SYNC_EVERY == 0:
            clock = torch.tensor([run.train_s], dtype=torch.float64, device=run.device)
            torch.distributed.broadcast(clock, src=0)
            self.synced_train_s = float(clock.item())

    def _row(self, fraction: float, validate_now: bool) -> None:
        """Reduce the loss window over ranks, validate if due (rank 0), write a log row."""
        run, train = self.run_state, self.run_state.config.train
        total = float(dist_utils.reduce_mean(self.loss_sum, run.info))
        # None (an empty log cell) when every step since the last row was skipped
        mean_loss = total / self.loss_count if self.loss_count else None
        self.loss_sum.zero_()
        self.loss_count = 0
        window = max(run.elapsed - self.window_start, 1e-9)
        rate = (run.step - self.window_step) * train.batch_size / window  # training only
        values: dict[str, float] = {}
        if validate_now and run.info.is_main:
            values = _validate(self.task, self.model, run.device, train.channels_last)
            run.record_validation(self.task, values[self.task.metric], self.model)
            run.elapsed = time.perf_counter() - self.clock_start
        if self.log is None:
            return
        epoch = run.step / self.budget.epoch_steps
        self.log.row(
            dict(step=run.step, epoch=epoch, lr=self.lr, loss=mean_loss, **values,
                 elapsed_s=run.elapsed, imgs_per_s=rate)
        )  # fmt: skip
        loss = math.nan if mean_loss is None else mean_loss
        self.log.progress(fraction, run.step, loss, self.lr, rate)
        if values:
            self.log.message(f"step {run.step}: {self.task.report(values)}")
