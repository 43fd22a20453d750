"""How fast the synthetic two-view benchmark is generated, on one core, per pair and per split.

Draws ``--pairs`` pairs of the test split (seed 2) at ``--points`` matches each, after a short
warm-up, and prints milliseconds per pair (median and mean), the extrapolated seconds for the
validation (500) and test (1,000) sets, and the generated mix of labels and outlier kinds.

Usage::

    python benchmarks/correspondences_data.py [--pairs 200] [--points 2000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from n3net.data.correspondences import synthetic_pair
from n3net.data.synthetic import GEN_TYPES, SyntheticConfig


def measure(pairs: int, points: int, split_seed: int = 2) -> dict[str, float]:
    """Per-pair generation times and the label statistics of the pairs drawn."""
    config = SyntheticConfig(num_points=points)
    for index in range(3):  # warm-up: imports, allocator
        synthetic_pair(split_seed, index, config)
    seconds, kinds, labels = [], [], []
    for index in range(pairs):
        start = time.perf_counter()
        pair = synthetic_pair(split_seed, index, config)
        seconds.append(time.perf_counter() - start)
        kinds.append(pair["gen_type"])
        labels.append(pair["labels"])
    kind, label = np.concatenate(kinds), np.concatenate(labels)
    median_ms = 1000 * statistics.median(seconds)
    result = {
        "pairs": pairs,
        "points": points,
        "median_ms_per_pair": median_ms,
        "mean_ms_per_pair": 1000 * statistics.fmean(seconds),
        "val_500_s": 500 * median_ms / 1000,
        "test_1000_s": 1000 * median_ms / 1000,
        "labelled_inliers": float(label.mean()),
    }
    for code, name in enumerate(GEN_TYPES):
        result[f"share_{name}"] = float((kind == code).mean())
        result[f"labelled_inlier_{name}"] = float(label[kind == code].mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--json", help="also write the numbers as JSON")
    args = parser.parse_args()
    result = measure(args.pairs, args.points)
    print(
        f"synthetic pairs of {args.points} matches: {result['median_ms_per_pair']:.2f} ms per "
        f"pair (median; mean {result['mean_ms_per_pair']:.2f}) -> validation 500 pairs "
        f"{result['val_500_s']:.1f} s, test 1000 pairs {result['test_1000_s']:.1f} s"
    )
    print(f"labelled inliers {result['labelled_inliers']:.3f} of all matches; by kind:")
    for name in GEN_TYPES:
        print(
            f"  {name:<14} {result[f'share_{name}']:.3f} of the matches, "
            f"{result[f'labelled_inlier_{name}']:.3f} of them labelled inliers"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2)
            file.write("\n")


if __name__ == "__main__":
    main()
