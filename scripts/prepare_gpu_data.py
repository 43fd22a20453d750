"""Stage the data of the GPU training recipe in `.gpu/data/` (git-ignored; carried to the device).

Run on the CPU machine, from the repository root:

    python scripts/prepare_gpu_data.py            # reads the benchmark sets under $N3NET_DATA

Writes:
    .gpu/data/train/  the paper's 400 training images (BSDS500 train = bsd200, test =
                      bsds500_test) in grey, converted exactly as the evaluation protocol converts
                      (n3net.data.protocol.load_gray_protocol), as PNG named <folder>_<id>.png so
                      that sorted order equals the order of the `paper` preset (bsd200, then
                      bsds500_test), hence the same held-out validation images (the last 8).
    .gpu/data/set12/, .gpu/data/bsd68/   copies of the two test sets (evaluation only).

The device call carries `.gpu/data` with the tree, and what travels must stay under 64 MiB; this
script fails when `.gpu/data` exceeds --max-mb MiB (45 by default; it holds about 42.6).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from n3net.data.imageio import list_images
from n3net.data.protocol import load_gray_protocol
from n3net.train.config import default_data_root

TRAIN_FOLDERS = ("bsd200", "bsds500_test")
TEST_FOLDERS = ("set12", "bsd68")


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _convert(source: Path, target: Path) -> int:
    """Write every image of ``source`` as a protocol-grey PNG into ``target``; return the count."""
    files = list_images(source)
    for path in files:
        grey = (load_gray_protocol(path)[0, 0].numpy() * 255).round().astype(np.uint8)
        name = f"{source.name}_{path.stem}.png"
        Image.fromarray(grey, mode="L").save(target / name, optimize=True)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=default_data_root(), help="shared data root")
    parser.add_argument("--out", default=".gpu/data", help="output folder (git-ignored)")
    parser.add_argument("--max-mb", type=float, default=45.0, help="size limit of the output")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    for name in TRAIN_FOLDERS + TEST_FOLDERS:
        if not (data / name).is_dir():
            print(f"error: {data / name} not found (set --data or N3NET_DATA)", file=sys.stderr)
            return 2
    if out.exists():
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    count = sum(_convert(data / name, out / "train") for name in TRAIN_FOLDERS)
    print(f"train: {count} grey PNGs, {_size_mb(out / 'train'):.1f} MB")
    for name in TEST_FOLDERS:
        (out / name).mkdir()
        for path in list_images(data / name):
            shutil.copy2(path, out / name / path.name)
        print(f"{name}: {len(list_images(out / name))} images, {_size_mb(out / name):.1f} MB")
    total = _size_mb(out)
    print(f"total {total:.1f} MB in {out}")
    if total > args.max_mb:
        print(f"error: {out} is {total:.1f} MB, over --max-mb {args.max_mb}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
