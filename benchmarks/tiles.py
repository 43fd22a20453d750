"""Cost and exactness of tiles: a model on one image whole and in tiles, in the same run.

Makes a noisy grey test image of ``--size`` pixels (the bundled sample image mirrored and
tiled, Gaussian noise of sigma 25 from a seeded generator), then times the model on it whole
(``tile=0``) and with ``--tile`` (the tile is the kept core; each window adds the receptive
field's radius of context), interleaved ``--repeats`` times so that drift of a busy machine
hits both alike, and compares the two outputs' PSNR against the clean image. The memory policy
is the command line's on the CPU (freed memory kept for reuse).

Usage::

    python benchmarks/tiles.py [--model n3net-gray-sigma25] [--size 500] [--tile 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from PIL import Image

import n3net
from n3net._memory import retain_freed_memory
from n3net.eval.metrics import psnr
from n3net.inference import Denoiser


def test_image(size: int, sigma: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float32 images in [0, 1] of ``size x size`` pixels."""
    sample = np.asarray(Image.open(n3net.sample_image_path(noisy=False)), np.float32) / 255
    block = np.block([[sample, sample[:, ::-1]], [sample[::-1], sample[::-1, ::-1]]])
    clean = np.tile(block, (-(-size // block.shape[0]),) * 2)[:size, :size]
    noise = np.random.default_rng(0).normal(0, sigma / 255, clean.shape).astype(np.float32)
    return np.ascontiguousarray(clean), clean + noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="n3net-gray-sigma25")
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    retain_freed_memory()
    clean, noisy = test_image(args.size)
    denoiser = Denoiser(args.model)
    times: dict[str, list[float]] = {"whole": [], "tiled": []}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, tile in (("whole", 0), ("tiled", args.tile)):
            start = time.perf_counter()
            outputs[name] = denoiser(noisy, tile=tile, clip=False)
            times[name].append(time.perf_counter() - start)
    whole, tiled = (statistics.median(times[k]) for k in ("whole", "tiled"))
    result = {
        "model": args.model,
        "size": args.size,
        "tile": args.tile,
        "threads": torch.get_num_threads(),
        "whole_seconds": round(whole, 2),
        "tiled_seconds": round(tiled, 2),
        "ratio": round(tiled / whole, 2),
        "psnr_whole": psnr(outputs["whole"], clean),
        "psnr_tiled": psnr(outputs["tiled"], clean),
        "max_abs_difference": float(np.abs(outputs["whole"] - outputs["tiled"]).max()),
    }
    result["psnr_difference"] = abs(result["psnr_whole"] - result["psnr_tiled"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
