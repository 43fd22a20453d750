"""Speed and peak memory of N3Net against DnCNN-17, measured in the same run.

Builds an N3Net-shaped network (3 DnCNN blocks of depth 6, 64 features, 2 image N3 blocks with
k = 7, 10x10 patches, stride 5, 15x15 search window) and a DnCNN of depth 17, both with random
weights, and measures on the same grayscale inputs:

* eval-mode forward time at 512x512 and 1024x1024 (median of ``--repeats`` runs after a
  warm-up, the two models' runs interleaved so that drift of the machine hits both alike);
* one training step, forward + backward + Adam, batch 8 of 80x80 (median, interleaved too);
* peak memory of one eval forward pass (the median of ``--memory-runs`` measurements). CPU:
  each measurement runs in a fresh subprocess and
  reports its peak RSS (``VmHWM`` of /proc/self/status; not ``ru_maxrss``, which Linux carries
  over from the parent through fork and exec) minus the RSS right after building the model and
  input, so the interpreter, libtorch and the weights do not dilute the ratio. CUDA:
  ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.

Usage::

    python benchmarks/speed.py [--device cpu|cuda] [--sizes 512 1024] [--json out.json]

Ratios are N3Net / DnCNN-17; lower is better.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from n3net._memory import retain_freed_memory
from n3net.models import create_model


def _build(arch: str, device: str, channels_last: bool = False) -> torch.nn.Module:
    if arch == "dncnn17":
        model = create_model("dncnn", depth=17)
    else:
        model = create_model("n3net")
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _input(size: int, device: str, channels_last: bool = False) -> torch.Tensor:
    x = torch.rand(1, 1, size, size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, repeats: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_times(
    size: int, device: str, repeats: int, channels_last: bool = False
) -> tuple[float, float]:
    """Median eval forward time of DnCNN-17 and N3Net, runs interleaved so drift hits both."""
    models = [_build(arch, device, channels_last).eval() for arch in ("dncnn17", "n3net")]
    x = _input(size, device, channels_last)
    times: list[list[float]] = [[], []]
    with torch.inference_mode():
        for model in models:  # warm-up
            model(x)
        for _ in range(repeats):
            for model, bucket in zip(models, times, strict=True):
                bucket.append(_time(lambda m=model: m(x), 1, 0, device))
    return statistics.median(times[0]), statistics.median(times[1])


def train_step_times(device: str, repeats: int, batch: int, crop: int) -> tuple[float, float]:
    """Median time of one training step (forward, backward, Adam) of both, interleaved."""
    gen = torch.Generator(device=device).manual_seed(0)
    clean = torch.rand(batch, 1, crop, crop, device=device, generator=gen)
    noisy = clean + 0.1 * torch.randn(clean.shape, device=device, generator=gen)
    steps = []
    for arch in ("dncnn17", "n3net"):
        model = _build(arch, device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(noisy), clean)
            loss.backward()
            opt.step()

        step()  # warm-up
        steps.append(step)
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for step, bucket in zip(steps, times, strict=True):
            bucket.append(_time(step, 1, 0, device))
    return statistics.median(times[0]), statistics.median(times[1])


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_memory_mb(
    arch: str, size: int, device: str, channels_last: bool = False, retain_memory: bool = False
) -> float:
    """Peak memory of one eval forward pass, in MiB (see the module docstring)."""
    if device.startswith("cuda"):
        model = _build(arch, device, channels_last).eval()
        x = _input(size, device, channels_last)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    code = (
        "import sys, torch\n"
        f"sys.path[:0] = {[str(Path(__file__).resolve().parent), *sys.path]!r}\n"
        "from speed import _build, _input, _rss_mb, _status_mb\n"
        "from n3net._memory import retain_freed_memory\n"
        f"if {retain_memory}: retain_freed_memory()\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        f"model = _build({arch!r}, 'cpu', {channels_last}).eval()\n"
        f"x = _input({size}, 'cpu', {channels_last})\n"
        "base = _rss_mb()\n"
        "with torch.inference_mode():\n"
        "    model(x)\n"
        "peak = _status_mb('VmHWM')\n"
        "print(peak - base)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-crop", type=int, default=80)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="eval forward and memory with channels-last models and inputs (n3net.Denoiser's "
        "CPU default); the training step is unchanged",
    )
    parser.add_argument(
        "--retain-memory",
        action="store_true",
        help="keep freed memory in the process (n3net._memory.retain_freed_memory, what the "
        "CLI does on a CPU) instead of glibc's default of unmapping every large buffer",
    )
    parser.add_argument(
        "--memory-runs",
        type=int,
        default=1,
        help="fresh processes per peak-memory measurement; the median is reported (a retained "
        "heap's peak varies from run to run with thread timing, see README)",
    )
    parser.add_argument("--json", default=None, help="write the flat results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.retain_memory:
        retain_freed_memory()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("speed.py: error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    res: dict[str, float | int | str | list[float]] = {
        "device": args.device
        if args.device == "cpu"
        else torch.cuda.get_device_name(torch.device(args.device)),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "channels_last": args.channels_last,
        "retain_memory": args.retain_memory,
    }
    rows = []
    for size in args.sizes:
        t_d, t_n = forward_times(size, args.device, args.repeats, args.channels_last)
        runs = {
            arch: [
                peak_memory_mb(arch, size, args.device, args.channels_last, args.retain_memory)
                for _ in range(max(1, args.memory_runs))
            ]
            for arch in ("dncnn17", "n3net")
        }
        m_d, m_n = (statistics.median_low(runs[arch]) for arch in ("dncnn17", "n3net"))
        if args.memory_runs > 1:
            res[f"peak_mem_dncnn17_{size}_mb_runs"] = runs["dncnn17"]
            res[f"peak_mem_n3net_{size}_mb_runs"] = runs["n3net"]
        res.update(
            {
                f"forward_time_dncnn17_{size}_s": t_d,
                f"forward_time_n3net_{size}_s": t_n,
                f"forward_time_ratio_{size}": t_n / t_d,
                f"peak_mem_dncnn17_{size}_mb": m_d,
                f"peak_mem_n3net_{size}_mb": m_n,
                f"peak_mem_ratio_{size}": m_n / m_d,
            }
        )
        rows.append((f"forward {size}x{size}", t_d, t_n, "s"))
        rows.append((f"peak memory {size}x{size}", m_d, m_n, "MiB"))
        print(
            f"[{size}] forward {t_d:.3f}s vs {t_n:.3f}s, memory {m_d:.0f} vs {m_n:.0f} MiB",
            flush=True,
        )
    s_d, s_n = train_step_times(args.device, args.repeats, args.train_batch, args.train_crop)
    res.update(
        {
            "train_step_time_dncnn17_s": s_d,
            "train_step_time_n3net_s": s_n,
            "train_step_time_ratio": s_n / s_d,
        }
    )
    rows.append((f"train step {args.train_batch}x{args.train_crop}^2", s_d, s_n, "s"))
    print(f"\ndevice {res['device']}, {res['threads']} threads, torch {res['torch']}")
    print(f"{'measurement':<26}{'DnCNN-17':>12}{'N3Net':>12}{'ratio':>8}")
    for name, a, b, unit in rows:
        print(f"{name:<26}{a:>10.3f}{unit[:1]:>2}{b:>10.3f}{unit[:1]:>2}{b / a:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
