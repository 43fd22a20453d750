"""Where an N3Net forward pass spends its time, next to DnCNN-17 in the same run.

Times the eval forward pass of the benchmark's N3Net (random weights, as ``speed.py``) and
splits it into the window aggregation (matching, selection and aggregation of both N3 blocks),
the embedding and temperature networks of the N3 blocks, and the rest (the three DnCNN blocks
and the glue), with DnCNN-17 timed in between; medians of ``--repeats`` runs after a warm-up.

Usage::

    python benchmarks/breakdown.py [--size 1024] [--repeats 3] [--retain-memory] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import n3net.blocks.n3_image as n3_image
from n3net._memory import retain_freed_memory
from n3net.models import create_model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[..., Any], total: list[float], device: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _sync(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(device)
        total[0] += time.perf_counter() - start
        return out

    return wrapper


def breakdown(size: int, repeats: int, device: str) -> dict[str, float]:
    """Median seconds of DnCNN-17 and of N3Net with its parts, at ``size`` x ``size``."""
    dncnn = create_model("dncnn", depth=17).to(device).eval()
    n3 = create_model("n3net").to(device).eval()
    window, nets = [0.0], [0.0]
    n3_image.window_aggregate = _timed(n3_image.window_aggregate, window, device)
    for block in n3.n3:
        for net in (block.embedding, block.temperature_net):
            net.forward = _timed(net.forward, nets, device)
    x = torch.rand(1, 1, size, size, device=device)
    runs: dict[str, list[float]] = {"dncnn17": [], "n3net": [], "window": [], "nets": []}
    with torch.inference_mode():
        dncnn(x)
        n3(x)
        for _ in range(repeats):  # interleaved, so that drift of the machine hits both
            for name, model in (("dncnn17", dncnn), ("n3net", n3)):
                total = [0.0]
                window[0] = nets[0] = 0.0
                _timed(model, total, device)(x)
                runs[name].append(total[0])
            runs["window"].append(window[0])
            runs["nets"].append(nets[0])
    res = {key: statistics.median(values) for key, values in runs.items()}
    res["rest"] = res["n3net"] - res["window"] - res["nets"]
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--retain-memory", action="store_true", help="as in speed.py")
    args = parser.parse_args(argv)
    if args.retain_memory:
        retain_freed_memory()
    res = breakdown(args.size, args.repeats, args.device)
    d = res["dncnn17"]
    threads = torch.get_num_threads()
    print(f"{args.size}x{args.size}, {args.device}, {threads} threads, retain {args.retain_memory}")
    for name, key in [
        ("DnCNN-17", "dncnn17"),
        ("N3Net", "n3net"),
        ("  window aggregation (2 N3 blocks)", "window"),
        ("  embedding + temperature nets", "nets"),
        ("  DnCNN blocks and the rest", "rest"),
    ]:
        print(f"{name:<36}{res[key]:>8.2f} s{res[key] / d:>8.2f} x DnCNN-17")
    return 0


if __name__ == "__main__":
    sys.exit(main())
