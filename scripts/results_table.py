"""Render `n3net evaluate --json` result files as the Markdown table of docs/results.md.

Usage: python scripts/results_table.py docs/results/*.json > table.md

Rows are (model, sigma), columns the data sets; each cell is the mean PSNR on the unclipped output
(the authors' protocol) with the paper's number beside it where the paper has one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Published numbers: N3Net, the paper's Table 3; DnCNN and BM3D as printed in DeamNet.
PAPER = {
    ("n3net", "set12"): {25: 30.55, 50: 27.43, 70: 25.90},
    ("n3net", "bsd68"): {25: 29.30, 50: 26.39, 70: 25.14},
    ("n3net", "urban100"): {25: 30.19, 50: 26.82},
    ("dncnn", "set12"): {25: 30.44, 50: 27.18},
    ("dncnn", "bsd68"): {25: 29.23, 50: 26.23},
    ("dncnn", "urban100"): {25: 29.97, 50: 26.28},
    ("bm3d", "set12"): {25: 29.97, 50: 26.72},
    ("bm3d", "bsd68"): {25: 28.57, 50: 25.62},
    ("bm3d", "urban100"): {25: 29.70, 50: 25.95},
}
DATASETS = ["set12", "bsd68", "urban100"]


def _family(model: str) -> str:
    name = Path(model).name.lower()
    for family in ("n3net", "dncnn", "bm3d", "nlm"):
        if name.startswith(family):
            return family
    return name


def main(paths: list[str]) -> int:
    cells: dict[tuple[str, float], dict[str, float]] = {}
    for path in paths:
        for result in json.loads(Path(path).read_text())["results"]:
            data = Path(result["data"]).name.lower()
            key = (result["model"], float(result["sigma"]))
            cells.setdefault(key, {})[data] = result["summary"]["mean_psnr"]
    print("| model | σ | " + " | ".join(f"{d} (ours / paper)" for d in DATASETS) + " |")
    print("|---|---|" + "---|" * len(DATASETS))
    for (model, sigma), row in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        parts = []
        for data in DATASETS:
            ours = f"{row[data]:.2f}" if data in row else "not run"
            paper = PAPER.get((_family(model), data), {}).get(int(sigma))
            parts.append(f"{ours} / {paper:.2f}" if paper is not None else f"{ours} / –")
        print(f"| {model} | {sigma:g} | " + " | ".join(parts) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
