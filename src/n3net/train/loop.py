"""The training loop for the Gaussian denoisers (paper §5.1; ../shared/facts/paper.md §3).

One step: a batch of noisy crops through the network, squared error against the clean crops
(``F.mse_loss``, the mean over pixels), Adam with L2 weight decay on conv weights and BN scales.
The learning rate decays exponentially over the run, ``lr · (lr_final / lr) ** progress``, where
``progress`` is the fraction of the step budget or of the time budget that is spent.

Axis legend: ``B`` batch, ``H, W`` image size, ``S`` crop side.
"""

from __future__ import annotations

import json
import math
import platform
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n3net.data.imageio import list_images
from n3net.data.protocol import add_gaussian_noise, load_gray_protocol
from n3net.eval.metrics import psnr
from n3net.train import distributed as dist_utils
from n3net.train.checkpoint import (
    CHECKPOINT_VERSION,
    atomic_save,
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
)
from n3net.train.config import RunConfig
from n3net.train.data import (
    BatchPlan,
    DeviceSampler,
    LoaderSampler,
    list_training_images,
    load_bank,
    mix_seed,
)
from n3net.train.logs import TrainLog, plot_curves

__all__ = ["TrainResult", "lr_at", "param_groups", "train", "train_step", "validate"]

_VALIDATION_STREAM = 2  # mix_seed tag of the validation noise
_SYNC_EVERY = 10  # steps between clock broadcasts under DDP
_MAX_SKIPPED_IN_A_ROW = 20  # consecutive non-finite steps before a run gives up


@dataclass
class TrainResult:
    """What a finished run reached."""

    out_dir: Path
    steps: int
    minutes: float
    best_val_psnr: float | None
    best_step: int | None


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters: decay conv/linear weights and normalisation scales, nothing else.

    Biases, BN shifts and free parameters (e.g. scalars) are not decayed, as in the paper.
    """
    weighted = (
        nn.modules.conv._ConvNd,
        nn.Linear,
        nn.modules.batchnorm._BatchNorm,
        nn.GroupNorm,
        nn.LayerNorm,
    )
    decay: list[nn.Parameter] = []
    for module in model.modules():
        is_weighted = isinstance(module, weighted)
        weight = getattr(module, "weight", None)
        if is_weighted and isinstance(weight, nn.Parameter):
            decay.append(weight)
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def lr_at(progress: float, lr: float, lr_final: float) -> float:
    """Exponential decay from ``lr`` (progress 0) to ``lr_final`` (progress 1).

    Example:
        >>> [f"{lr_at(p, 1e-3, 1e-6):.3g}" for p in (0.0, 0.5, 1.0)]
        ['0.001', '3.16e-05', '1e-06']
    """
    return lr * (lr_final / lr) ** min(max(progress, 0.0), 1.0)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    noisy: Tensor,
    clean: Tensor,
    amp: bool = False,
) -> Tensor:
    """One optimisation step on (B, 1, S, S) batches; returns the detached loss.

    A batch whose loss or gradient is not finite is skipped: parameters, buffers (BatchNorm
    statistics) and optimiser state stay as they were, and the returned loss is NaN so that the
    caller can count it.
    """
    optimizer.zero_grad(set_to_none=True)
    buffers = [b.clone() for b in model.buffers()]  # BN statistics: a few kB
    with torch.autocast(noisy.device.type, dtype=torch.bfloat16, enabled=amp):
        output = model(noisy)
    loss = F.mse_loss(output.float(), clean)
    loss.backward()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    grads = [g for g in grads if g is not None]
    norms = torch.stack([n.float() for n in torch._foreach_norm(grads)]) if grads else loss[None]
    if not bool(torch.isfinite(loss) & torch.isfinite(norms).all()):
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        return torch.full_like(loss.detach(), math.nan)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def validate(
    model: nn.Module,
    images: list[Tensor],
    sigma: float,
    seed: int,
    device: torch.device,
    channels_last: bool = False,
) -> float:
    """Mean PSNR on full images, one by one, in eval mode, float32, fixed noise per image."""
    was_training = model.training
    model.eval()
    values = []
    for index, clean in enumerate(images):
        generator = torch.Generator().manual_seed(mix_seed(seed, _VALIDATION_STREAM, index))
        noisy = add_gaussian_noise(clean, sigma, generator).to(device)
        if channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        values.append(psnr(model(noisy).float(), clean))
    model.train(was_training)
    return float(np.mean(values))


def _hardware(device: torch.device, world_size: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        if Path("/proc/cpuinfo").is_file():
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        name = f"CPU {name}, {torch.get_num_threads()} threads"
    return f"{world_size} x {name}" if world_size > 1 else name


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


def _load_images(config: RunConfig) -> tuple[list[Path], list[Path]]:
    """Return (training files, validation files): held-out images or a separate folder."""
    data = config.data
    files = list_training_images([config.resolve_path(d) for d in data.train_dirs])
    if data.val_dir is not None:
        return files, list_images(config.resolve_path(data.val_dir))
    held_out = data.val_images if data.val_images < len(files) else 0
    if data.val_images and not held_out:
        raise ValueError(f"data.val_images={data.val_images} leaves no training images")
    return files[: len(files) - held_out], files[len(files) - held_out :]


def _check_resume(state: dict[str, Any], config: RunConfig) -> None:
    saved = RunConfig.from_dict(state["config"])
    if (saved.model.arch, saved.model.kwargs) != (config.model.arch, config.model.kwargs):
        raise ValueError(
            f"the checkpoint trains {saved.model.arch} {saved.model.kwargs}, the config asks for "
            f"{config.model.arch} {config.model.kwargs}; resume with the same model"
        )
    if saved.data.sigma != config.data.sigma:
        raise ValueError(f"the checkpoint trains sigma {saved.data.sigma}, not {config.data.sigma}")


class _Run:
    """State of one run; ``train`` drives it."""

    def __init__(self, config: RunConfig, info: dist_utils.DistInfo, device: torch.device) -> None:
        self.config, self.info, self.device = config, info, device
        self.out_dir = Path(config.train.out_dir)
        self.step, self.elapsed = 0, 0.0
        self.skipped = 0  # steps skipped for a non-finite loss or gradient
        self.best_psnr: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.last_val: float | None = None

    def checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        state = {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "skipped": self.skipped,
            "config": self.config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best": {"psnr": self.best_psnr, "step": self.best_step, "model": self.best_state},
            "last_val_psnr": self.last_val,
            "data": {"seed": self.config.train.seed, "next_batch": self.step},
            "rng": capture_rng_states(),
            "world_size": self.info.world_size,
        }
        atomic_save(state, self.out_dir / "last.pt")

    def restore(self, state: dict[str, Any], model: nn.Module, optimizer: Any) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.skipped = int(state.get("skipped", 0))
        best = state["best"]
        self.best_psnr, self.best_step, self.best_state = best["psnr"], best["step"], best["model"]
        self.last_val = state.get("last_val_psnr")
        restore_rng_states(state["rng"])

    def record_validation(self, value: float, model: nn.Module) -> None:
        self.last_val = value
        if self.best_psnr is None or value > self.best_psnr:
            self.best_psnr, self.best_step = value, self.step
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train(config: RunConfig, resume: str | None = None, overwrite: bool = False) -> TrainResult:
    """Train a denoiser as configured; resumable, single- or multi-process (torchrun).

    Args:
        config: the run's configuration.
        resume: a checkpoint path, ``"auto"`` (``out_dir/last.pt`` when it exists) or None.
        overwrite: allow replacing finished weights / an existing checkpoint in ``out_dir``.
    Returns:
        Steps and minutes reached and the best validation PSNR (on rank 0; other ranks get the
        same steps).
    """
    info = dist_utils.detect()
    device = dist_utils.resolve_device(config.train.device, info)
    dist_utils.setup(info, device)
    try:
        return _train(config, info, device, resume, overwrite)
    finally:
        dist_utils.cleanup(info)


def _train(
    config: RunConfig,
    info: dist_utils.DistInfo,
    device: torch.device,
    resume: str | None,
    overwrite: bool,
) -> TrainResult:
    from n3net.models import create_model, save_model

    data, tc = config.data, config.train
    run = _Run(config, info, device)
    out_dir = run.out_dir
    resume_path = _check_out_dir(out_dir, resume, overwrite)
    if tc.batch_size % info.world_size:
        raise ValueError(
            f"train.batch_size must divide among {info.world_size} processes, got {tc.batch_size}"
        )
    train_files, val_files = _load_images(config)
    bank = load_bank(train_files, data.crop_size)
    val_images = [load_gray_protocol(path) for path in val_files] if info.is_main else []

    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed % 2**32)
    random.seed(tc.seed)
    model = create_model(config.model.arch, **config.model.kwargs).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        param_groups(model, tc.weight_decay), lr=tc.lr, betas=(tc.betas[0], tc.betas[1])
    )
    if resume_path is not None:
        state = load_checkpoint(resume_path)
        _check_resume(state, config)
        run.restore(state, model, optimizer)
        del state
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trained = dist_utils.wrap_model(model, info, device, tc.sync_bn)

    plan = BatchPlan(
        tc.seed, tc.batch_size // info.world_size, info.world_size, info.rank,
        data.crop_size, data.crops_per_image, data.sigma,
    )  # fmt: skip
    if data.sampler == "device":
        sampler: DeviceSampler | LoaderSampler = DeviceSampler(bank, plan, run.step, device)
    else:
        sampler = LoaderSampler(bank, plan, run.step, device, tc.workers)
    epoch_steps = len(bank) * data.crops_per_image / tc.batch_size
    total_steps = tc.max_steps
    if total_steps is None and tc.max_minutes is None:
        total_steps = math.ceil(tc.epochs * epoch_steps)
    budget_s = None if tc.max_minutes is None else tc.max_minutes * 60

    def progress(step: int, elapsed: float) -> float:
        parts = [0.0]
        if total_steps is not None:
            parts.append(step / total_steps)
        if budget_s is not None:
            parts.append(elapsed / budget_s)
        return max(parts)

    log = None
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.step == 0 and (out_dir / "tensorboard").is_dir():
            shutil.rmtree(out_dir / "tensorboard")
        for stale in out_dir.glob(".last.pt.*"):  # temporary files of a killed checkpoint write
            stale.unlink(missing_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        log = TrainLog(out_dir, run.step, tc.tensorboard, tc.progress)
        what = f"resuming {resume_path} at step {run.step}" if run.step else "starting"
        log.message(
            f"{what}: {config.model.arch}, {len(bank)} training / {len(val_images)} validation "
            f"images, sigma {data.sigma}, batch {tc.batch_size} of {data.crop_size}x"
            f"{data.crop_size}, {device} x {info.world_size}, amp {tc.amp}"
        )

    amp = tc.amp == "bf16"
    clock_start = time.perf_counter() - run.elapsed
    synced_elapsed = run.elapsed
    last_ckpt_time, window_start, window_step = run.elapsed, run.elapsed, run.step
    loss_sum = torch.zeros((), device=device)
    loss_count = skipped_in_a_row = 0
    lr = tc.lr
    try:
        while True:
            fraction = progress(run.step, synced_elapsed)
            if fraction >= 1:
                break
            lr = lr_at(fraction, tc.lr, tc.lr_final)
            for group in optimizer.param_groups:
                group["lr"] = lr
            noisy, clean = next(sampler)
            if tc.channels_last:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            step_loss = train_step(trained, optimizer, noisy, clean, amp)
            run.step += 1
            if bool(torch.isfinite(step_loss)):
                loss_sum += step_loss
                loss_count += 1
                skipped_in_a_row = 0
            else:
                run.skipped += 1
                skipped_in_a_row += 1
                if log is not None:
                    log.message(
                        f"step {run.step}: skipped, non-finite loss or gradient "
                        f"({run.skipped} skipped so far)"
                    )
                if skipped_in_a_row >= _MAX_SKIPPED_IN_A_ROW:
                    raise RuntimeError(
                        f"{skipped_in_a_row} steps in a row had a non-finite loss or gradient "
                        f"(last at step {run.step}); lower train.lr or use train.amp='none'"
                    )
            run.elapsed = time.perf_counter() - clock_start
            if not info.distributed:
                synced_elapsed = run.elapsed
            elif run.step % _SYNC_EVERY == 0:
                clock = torch.tensor([run.elapsed], dtype=torch.float64, device=device)
                torch.distributed.broadcast(clock, src=0)
                synced_elapsed = float(clock.item())
            finished = progress(run.step, synced_elapsed) >= 1
            validate_now = bool(val_files) and (
                finished or (tc.val_every > 0 and run.step % tc.val_every == 0)
            )
            if finished or validate_now or run.step % tc.log_every == 0:
                total = float(dist_utils.reduce_mean(loss_sum, info))
                # None (an empty log cell) when every step since the last row was skipped
                mean_loss = total / loss_count if loss_count else None
                loss_sum.zero_()
                loss_count = 0
                window = max(run.elapsed - window_start, 1e-9)
                rate = (run.step - window_step) * tc.batch_size / window  # training only
                val_psnr = None
                if validate_now and info.is_main:
                    val_psnr = validate(
                        model, val_images, data.sigma, tc.seed, device, tc.channels_last
                    )
                    run.record_validation(val_psnr, model)
                    run.elapsed = time.perf_counter() - clock_start
                window_start, window_step = run.elapsed, run.step
                if log is not None:
                    epoch = run.step / epoch_steps
                    log.row(
                        dict(step=run.step, epoch=epoch, lr=lr, loss=mean_loss, val_psnr=val_psnr,
                             elapsed_s=run.elapsed, imgs_per_s=rate)
                    )  # fmt: skip
                    log.progress(
                        fraction, run.step, math.nan if mean_loss is None else mean_loss, lr, rate
                    )
                    if val_psnr is not None:
                        log.message(f"step {run.step}: validation PSNR {val_psnr:.3f} dB")
            due = (tc.ckpt_every > 0 and run.step % tc.ckpt_every == 0) or (
                tc.ckpt_minutes > 0 and run.elapsed - last_ckpt_time >= tc.ckpt_minutes * 60
            )
            if info.is_main and (due or finished):
                run.checkpoint(model, optimizer)
                last_ckpt_time = run.elapsed
    except KeyboardInterrupt:
        if info.is_main and run.step > 0:
            run.checkpoint(model, optimizer)
            if log is not None:
                log.message(f"interrupted: checkpoint of step {run.step} in {out_dir / 'last.pt'}")
        raise
    finally:
        sampler.close()
        if log is not None:
            log.close()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result = TrainResult(out_dir, run.step, run.elapsed / 60, run.best_psnr, run.best_step)
    if info.is_main:
        _finish(run, model, save_model, len(bank), len(val_images))
    return result


def _finish(run: _Run, model: nn.Module, save_model: Any, n_train: int, n_val: int) -> None:
    """Write the final weights, the curves and a summary (rank 0)."""
    config, out_dir = run.config, run.out_dir
    metadata = {
        "sigma": f"{config.data.sigma:g}",
        "steps": str(run.step),
        "minutes": f"{run.elapsed / 60:.2f}",
        "hardware": _hardware(run.device, run.info.world_size),
        "torch": torch.__version__,
        "train_data": f"{', '.join(config.data.train_dirs)} ({n_train} images, "
        f"{n_val} held out for validation)",
        "protocol": f"preset {config.data.preset}, batch {config.train.batch_size} of "
        f"{config.data.crop_size}x{config.data.crop_size}, amp {config.train.amp}",
    }
    save_model(model, out_dir / "last.safetensors", {**metadata, "weights": "last"})
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
        metadata.update(
            weights=f"best validation (step {run.best_step})", val_psnr=f"{run.best_psnr:.3f}"
        )
    else:
        metadata["weights"] = "last"
    save_model(model, out_dir / "model.safetensors", metadata)
    plot_curves(out_dir / "log.csv", out_dir / "curves.png", title=config.model.arch)
    summary = {
        "arch": config.model.arch,
        "steps": run.step,
        "skipped_steps": run.skipped,
        "minutes": round(run.elapsed / 60, 3),
        "best_val_psnr": run.best_psnr,
        "best_step": run.best_step,
        "last_val_psnr": run.last_val,
        "hardware": metadata["hardware"],
        "amp": config.train.amp,
        "batch": f"{config.train.batch_size} x {config.data.crop_size}x{config.data.crop_size}",
        "imgs_per_s": round(run.step * config.train.batch_size / max(run.elapsed, 1e-9), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    best = "n/a" if run.best_psnr is None else f"{run.best_psnr:.3f} dB (step {run.best_step})"
    print(
        f"{config.model.arch}: {run.step} steps in {run.elapsed / 60:.2f} min, best validation "
        f"{best}; weights in {out_dir / 'model.safetensors'}",
        flush=True,
    )
