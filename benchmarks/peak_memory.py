"""Peak memory (RSS) of `n3net denoise` on a large photo, each model in a fresh process.

Makes a synthetic grey photo of ``--size`` pixels by tiling the bundled 256x256 sample image
(written under ``--workdir``), then runs ``python -m n3net denoise`` on it once per model in a
fresh subprocess and reports that process's peak RSS (``VmHWM`` of ``/proc/<pid>/status``,
polled while it runs; Linux only), its wall time and its exit code. The default settings are
the command line's: automatic tiles under ``--memory`` (1024 MB per forward pass) and freed
memory kept for reuse on the CPU.

Usage::

    python benchmarks/peak_memory.py [--models dncnn17-gray-sigma25 n3net-gray-sigma25]
        [--size 3000x2000] [--workdir /tmp/n3net-peak] [--json out.json] [-- denoise options]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import n3net

MODELS = ("dncnn17-gray-sigma25", "n3net-gray-sigma25")


def synthetic_photo(width: int, height: int, folder: Path) -> Path:
    """The sample image tiled to ``width x height`` (mirrored copies keep the seams smooth)."""
    sample = np.asarray(Image.open(n3net.sample_image_path()))
    block = np.block([[sample, sample[:, ::-1]], [sample[::-1], sample[::-1, ::-1]]])
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]))
    photo = np.tile(block, reps)[:height, :width]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"photo-{width}x{height}.png"
    Image.fromarray(photo).save(path)
    return path


def _peak_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(model: str, photo: Path, out: Path, extra: list[str]) -> dict[str, object]:
    """Run one denoise in a fresh process and return its peak RSS, time and exit code."""
    command = [sys.executable, "-m", n3net.__name__, "denoise", str(photo), "-o", str(out)]
    command += ["--model", model, "--overwrite", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _peak_kib(process.pid) or 0)
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    return {
        "model": model,
        "size": f"{Image.open(photo).width}x{Image.open(photo).height}",
        "options": extra,
        "peak_rss_mb": round(peak / 1024, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "returncode": process.returncode,
        "message": (stdout.strip().splitlines() or [""])[-1]
        if not process.returncode
        else (stderr.strip().splitlines() or [""])[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", default="3000x2000", help="WIDTHxHEIGHT (default 3000x2000)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/n3net-peak"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("extra", nargs="*", help="options passed to n3net denoise (after --)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    photo = synthetic_photo(width, height, args.workdir)
    results = []
    for model in args.models:
        result = measure(model, photo, args.workdir / f"{model}.png", args.extra)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
