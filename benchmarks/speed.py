"""Speed and peak memory of N3Net against DnCNN-17, measured in the same run.

Builds an N3Net-shaped network (3 DnCNN blocks of depth 6, 64 features, 2 image N3 blocks with
k = 7, 10x10 patches, stride 5, 15x15 search window) and a DnCNN of depth 17, both with random
weights, and measures on the same grayscale inputs:

* eval-mode forward time at 512x512 and 1024x1024 (median of ``--repeats`` runs after warm-up);
* one training step, forward + backward + Adam, batch 8 of 80x80 (median);
* peak memory of one eval forward pass. CPU: each measurement runs in a fresh subprocess and
  reports peak RSS (``ru_maxrss``) minus the RSS right after building the model and input, so
  the interpreter, libtorch and the weights do not dilute the ratio. CUDA:
  ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.

Usage::

    python benchmarks/speed.py [--device cpu|cuda] [--sizes 512 1024] [--json out.json]

Ratios are N3Net / DnCNN-17; lower is better.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from n3net.models import create_model


def _build(arch: str, device: str) -> torch.nn.Module:
    if arch == "dncnn17":
        model = create_model("dncnn", depth=17)
    else:
        model = create_model("n3net")
    return model.to(device)


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


def forward_time(arch: str, size: int, device: str, repeats: int) -> float:
    model = _build(arch, device).eval()
    x = torch.rand(1, 1, size, size, device=device)
    with torch.inference_mode():
        return _time(lambda: model(x), repeats, 1, device)


def train_step_time(arch: str, device: str, repeats: int, batch: int, crop: int) -> float:
    model = _build(arch, device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    clean = torch.rand(batch, 1, crop, crop, device=device, generator=gen)
    noisy = clean + 0.1 * torch.randn(clean.shape, device=device, generator=gen)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(noisy), clean)
        loss.backward()
        opt.step()

    return _time(step, repeats, 2, device)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_memory_mb(arch: str, size: int, device: str) -> float:
    """Peak memory of one eval forward pass, in MiB (see the module docstring)."""
    if device.startswith("cuda"):
        model = _build(arch, device).eval()
        x = torch.rand(1, 1, size, size, device=device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    code = (
        "import resource, sys, torch\n"
        f"sys.path[:0] = {[str(Path(__file__).resolve().parent), *sys.path]!r}\n"
        "from speed import _build, _rss_mb\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        f"model = _build({arch!r}, 'cpu').eval()\n"
        f"x = torch.rand(1, 1, {size}, {size})\n"
        "base = _rss_mb()\n"
        "with torch.inference_mode():\n"
        "    model(x)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
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
    parser.add_argument("--json", default=None, help="write the flat results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("speed.py: error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    res: dict[str, float | int | str] = {
        "device": args.device
        if args.device == "cpu"
        else torch.cuda.get_device_name(torch.device(args.device)),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    rows = []
    for size in args.sizes:
        t_d = forward_time("dncnn17", size, args.device, args.repeats)
        t_n = forward_time("n3net", size, args.device, args.repeats)
        m_d = peak_memory_mb("dncnn17", size, args.device)
        m_n = peak_memory_mb("n3net", size, args.device)
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
    s_d = train_step_time("dncnn17", args.device, args.repeats, args.train_batch, args.train_crop)
    s_n = train_step_time("n3net", args.device, args.repeats, args.train_batch, args.train_crop)
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
