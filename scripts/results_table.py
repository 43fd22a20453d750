"""Render `n3net evaluate --json` result files as the Markdown tables of docs/results.md.

Usage::

    python scripts/results_table.py docs/results/*.json                # denoising table
    python scripts/results_table.py --task sr docs/results/sr-*.json   # super-resolution tables
    python scripts/results_table.py --task sr docs/results/sr-*.json --write docs/results.md

Denoising: rows are (model, sigma), columns the data sets; each cell is the mean PSNR on the
unclipped output (the authors' protocol) with the paper's number beside it where the paper has
one. Result files of other tasks are skipped.

Super-resolution (results with a ``scale``): one row per (model, data set), columns ×2 / ×3 /
×4, each cell the mean Y-PSNR / SSIM with the published number in brackets, then the
N3Net-SR − VDSR gap per data set and scale when both are in the files. ``--write DOC`` puts
these tables into DOC between the lines ``<!-- sr-results:begin -->`` and
``<!-- sr-results:end -->`` (appended at the end when DOC has no such section yet).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
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
DATA_NAMES = {"set12": "Set12", "bsd68": "BSD68", "urban100": "Urban100"}

# Published super-resolution numbers, (Y-PSNR dB, SSIM or None) per family, data set and scale:
# VDSR and bicubic as in VDSR's Table 2 (Kim et al., CVPR 2016); N3Net-SR, the N3Net paper
# (§5.4: Set5 ×2 37.57, ×3 33.84, ×4 VDSR + 0.15 dB; its other sets are in its supplement).
SR_PUBLISHED: dict[str, dict[str, dict[int, tuple[float, float | None]]]] = {
    "bicubic": {
        "set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
        "set14": {2: (30.24, 0.8688), 3: (27.55, 0.7742), 4: (26.00, 0.7027)},
        "b100": {2: (29.56, 0.8431), 3: (27.21, 0.7385), 4: (25.96, 0.6675)},
    },
    "vdsr": {
        "set5": {2: (37.53, 0.9587), 3: (33.66, 0.9213), 4: (31.35, 0.8838)},
        "set14": {2: (33.03, 0.9124), 3: (29.77, 0.8314), 4: (28.01, 0.7674)},
        "b100": {2: (31.90, 0.8960), 3: (28.82, 0.7976), 4: (27.29, 0.7251)},
    },
    "n3net-sr": {"set5": {2: (37.57, None), 3: (33.84, None), 4: (31.50, None)}},
}
SR_DATASETS = ["set5", "set14", "b100"]
SR_SCALES = [2, 3, 4]
_SR_NAMES = {"set5": "Set5", "set14": "Set14", "b100": "B100"}
SR_BEGIN, SR_END = "<!-- sr-results:begin -->", "<!-- sr-results:end -->"

# (model, data set, scale) -> (mean Y-PSNR, mean SSIM, images)
SRCells = dict[tuple[str, str, int], tuple[float, float, int]]


def _family(model: str) -> str:
    name = Path(model).name.lower()
    for family in ("n3net", "dncnn", "bm3d", "nlm"):
        if name.startswith(family):
            return family
    return name


def sr_family(model: str) -> str:
    """The published family of a super-resolution model name, file or run folder.

    Example:
        >>> sr_family("runs/a/n3net-sr/model.safetensors"), sr_family("vdsr-x234")
        ('n3net-sr', 'vdsr')
    """
    text = model.replace("\\", "/").lower()
    for family in ("n3net-sr", "vdsr", "bicubic"):
        if family in text:
            return family
    return Path(model).stem.lower()


def sr_label(model: str) -> str:
    """A short row label: a run's model file by its run folder, other files by their stem.

    Example:
        >>> sr_label("/tmp/out/vdsr/model.safetensors"), sr_label("bicubic")
        ('vdsr', 'bicubic')
    """
    path = Path(model)
    if path.name == "model.safetensors" and path.parent.name:
        return path.parent.name
    if path.suffix == ".safetensors":
        return path.stem
    return model


def published_sr(family: str, data: str, scale: int) -> tuple[float, float | None] | None:
    """The published (Y-PSNR, SSIM) of a family on a data set at a scale, or None."""
    return SR_PUBLISHED.get(family, {}).get(data, {}).get(scale)


def load_results(paths: Iterable[str | Path]) -> list[dict]:
    """Every result of the given `n3net evaluate --json` files, in order."""
    results: list[dict] = []
    for path in paths:
        results += json.loads(Path(path).read_text())["results"]
    return results


def sr_cells(results: Iterable[dict]) -> SRCells:
    """The super-resolution results (those with a ``scale``) by (model, data set, scale)."""
    cells: SRCells = {}
    for result in results:
        if "scale" not in result:
            continue
        data = Path(result["data"]).name.lower()
        summary = result["summary"]
        cells[(result["model"], data, int(result["scale"]))] = (
            float(summary["mean_psnr"]),
            float(summary["mean_ssim"]),
            int(summary["n_images"]),
        )
    return cells


def _sr_models(cells: SRCells) -> list[str]:
    order = {"bicubic": 0, "vdsr": 1, "n3net-sr": 2}
    models = list(dict.fromkeys(model for model, _, _ in cells))
    return sorted(models, key=lambda m: (order.get(sr_family(m), 3), models.index(m)))


def _sr_datasets(cells: SRCells) -> list[str]:
    found = list(dict.fromkeys(data for _, data, _ in cells))
    return [d for d in SR_DATASETS if d in found] + [d for d in found if d not in SR_DATASETS]


def sr_gap(cells: SRCells) -> dict[tuple[str, int], float]:
    """N3Net-SR − VDSR Y-PSNR per (data set, scale), for the first model of each family."""
    models = _sr_models(cells)
    vdsr = next((m for m in models if sr_family(m) == "vdsr"), None)
    n3net = next((m for m in models if sr_family(m) == "n3net-sr"), None)
    if vdsr is None or n3net is None:
        return {}
    return {
        (data, scale): cells[(n3net, data, scale)][0] - cells[(vdsr, data, scale)][0]
        for (model, data, scale) in cells
        if model == n3net and (vdsr, data, scale) in cells
    }


def sr_tables(cells: SRCells, published: bool = True) -> str:
    """The Markdown tables of super-resolution results (see the module docstring).

    Example:
        >>> cells = {("bicubic", "set5", 2): (33.6556, 0.9297, 5)}
        >>> print(sr_tables(cells).splitlines()[2])
        | bicubic | Set5 (5) | 33.66 / 0.9297 (33.66 / 0.9299) |
    """
    models, datasets = _sr_models(cells), _sr_datasets(cells)
    scales = sorted({scale for _, _, scale in cells})
    head = " | ".join(f"×{s}" for s in scales)
    lines = [f"| model | data (images) | {head} |", "|---|---|" + "---|" * len(scales)]
    for model in models:
        family = sr_family(model)
        for data in datasets:
            entries = [cells.get((model, data, s)) for s in scales]
            if not any(entries):
                continue
            count = next(e[2] for e in entries if e)
            parts = []
            for scale, entry in zip(scales, entries, strict=True):
                if entry is None:
                    parts.append("not run")
                    continue
                text = f"{entry[0]:.2f} / {entry[1]:.4f}"
                known = published_sr(family, data, scale) if published else None
                if known is not None:
                    ssim = f" / {known[1]:.4f}" if known[1] is not None else ""
                    text += f" ({known[0]:.2f}{ssim})"
                parts.append(text)
            name = _SR_NAMES.get(data, data)
            lines.append(f"| {sr_label(model)} | {name} ({count}) | " + " | ".join(parts) + " |")
    gap = sr_gap(cells)
    if gap:
        lines += ["", f"| N3Net-SR − VDSR (dB) | {head} |", "|---|" + "---|" * len(scales)]
        for data in datasets:
            if not any((data, s) in gap for s in scales):
                continue
            parts = [f"{gap[(data, s)]:+.2f}" if (data, s) in gap else "–" for s in scales]
            lines.append(f"| {_SR_NAMES.get(data, data)} | " + " | ".join(parts) + " |")
        paper = []
        for scale in scales:
            ours, theirs = (
                published_sr("n3net-sr", "set5", scale),
                published_sr("vdsr", "set5", scale),
            )
            paper.append(f"{ours[0] - theirs[0]:+.2f}" if ours and theirs else "–")
        lines.append("| Set5, paper | " + " | ".join(paper) + " |")
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """``text`` with the part between the SR markers replaced by ``section`` (or appended)."""
    block = f"{SR_BEGIN}\n{section}\n{SR_END}"
    start, end = text.find(SR_BEGIN), text.find(SR_END)
    if start < 0 or end < start:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:start] + block + text[end + len(SR_END) :]


def denoise_table(results: Sequence[dict]) -> str:
    """The Markdown table of the denoising results (those with a ``sigma``)."""
    cells: dict[tuple[str, float], dict[str, float]] = {}
    for result in results:
        if "sigma" not in result:
            continue
        data = Path(result["data"]).name.lower()
        key = (result["model"], float(result["sigma"]))
        cells.setdefault(key, {})[data] = result["summary"]["mean_psnr"]
    lines = ["| model | σ | " + " | ".join(f"{d} (ours / paper)" for d in DATASETS) + " |"]
    lines.append("|---|---|" + "---|" * len(DATASETS))
    for (model, sigma), row in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        parts = []
        for data in DATASETS:
            ours = f"{row[data]:.2f}" if data in row else "not run"
            paper = PAPER.get((_family(model), data), {}).get(int(sigma))
            parts.append(f"{ours} / {paper:.2f}" if paper is not None else f"{ours} / –")
        lines.append(f"| {model} | {sigma:g} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="n3net evaluate --json files")
    parser.add_argument("--task", choices=("denoise", "sr"), default="denoise")
    parser.add_argument("--write", type=Path, help="sr: put the tables into this Markdown file")
    args = parser.parse_args(argv)
    try:
        results = load_results(args.files)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: not an n3net evaluate result file ({error})", file=sys.stderr)
        return 2
    if args.task == "denoise":
        print(denoise_table(results))
        return 0
    cells = sr_cells(results)
    if not cells:
        print("error: no super-resolution results in the files", file=sys.stderr)
        return 2
    tables = sr_tables(cells)
    if args.write is None:
        print(tables)
        return 0
    text = args.write.read_text() if args.write.is_file() else ""
    args.write.write_text(replace_section(text, tables))
    print(f"wrote the super-resolution tables into {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
