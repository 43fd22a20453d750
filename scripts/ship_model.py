"""Ship a trained model file: copy it into the package with its measured results recorded.

Usage::

    python scripts/ship_model.py runs/x/model.safetensors NAME --results R.json [R.json ...]
        [--hardware TEXT] [--note NOTE.md] [--force]

Reads the ``n3net evaluate --json`` result files and writes
``src/n3net/models/weights/NAME.safetensors``: the same tensors and metadata plus the measured
numbers, which ``n3net models`` lists. The result files must name the model by this very file
(or its run folder, or NAME for a model already shipped); an existing NAME is only replaced with
``--force``. Writes atomically. The model may also be given as its run folder. ``--hardware``
replaces the file's ``hardware`` entry (which names the machine of the run's last piece) for a
run trained in pieces on different machines or thread counts. ``--note`` appends a Markdown
file's text to the model card (what its numbers mean for a user, e.g. a known weakness).

Denoising models: the mean PSNR of the model on each test folder at the file's own sigma, as
``<folder>_psnr`` entries (e.g. ``bsd68_psnr``), which ``n3net.inference.default_model`` ranks
by; a BSD68 result is required. It also writes the model card ``NAME.md``: the architecture,
data, recipe, budget (steps, crops, hours, against the authors' budget) and hardware from the
file's metadata, and the PSNR / SSIM on Set12, BSD68 and Urban100 next to the paper's N3Net,
DnCNN and BM3D and next to every other model that the result files hold at the same sigma (e.g.
the equal-steps partner), with the differences.

Super-resolution models (task ``sr``): NAME must be ``<arch>-x<scales>`` (``vdsr-x234``,
``n3net-sr-x234``); the Y-PSNR and SSIM on each test folder at each trained scale go in as
``<folder>_x<scale>_psnr`` / ``_ssim`` (e.g. ``set5_x2_psnr``); Set5 results at every trained
scale are required. It also writes the model card ``NAME.md`` beside the weights: the
architecture, data, protocol, budget and hardware from the file's metadata, and the results on
Set5, Set14 and B100 next to the published ones (and next to bicubic and the other network, when
the result files hold them).

Correspondence models (task ``correspondences``): NAME must be ``<arch>-synth`` for weights
trained on the synthetic benchmark (``cnnet-synth``, ``cnnet-n3-synth``); the pose mAP and inlier
scores of the file on the synthetic test split go in as ``synthetic_map20`` etc. (per tier:
``synthetic_hard_map20``), with the split's seed, pairs and matches; a synthetic result is
required. It also writes the model card: the metadata as above and the results next to the pose
baselines and the other network that the result files hold.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parent / "src" / "n3net" / "models" / "weights"
CORR_METRICS = ("map5", "map10", "map20", "precision", "recall", "f1")
CORR_TIERS = ("easy", "medium", "hard")
_CORR_DESCRIPTION = {
    "cnnet": "CNNet (Yi et al. 2018: a 4→128 per-match layer, 12 residual blocks of linear "
    "layer, context norm, batch norm and ReLU, one logit per match)",
    "cnnet-n3": "CNNet + N3 block (CNNet with block 6 narrowed to 32 channels and followed by "
    "the set N3 block, k = 3, over all matches of a pair; the paper's §5.5 network)",
}
_SR_DESCRIPTION = {
    "vdsr": "VDSR ({depth} conv layers of {features} features, no batch norm, a global residual "
    "on the bicubic-upsampled input)",
    "n3net-sr": "N3Net-SR ({n_blocks} VDSR blocks of depth {depth} with {features} features, an "
    "N3 block (k = {k}, {patch_size}×{patch_size} patches at stride {stride}, a "
    "{search_window}×{search_window}-patch window) after each but the last)",
}


def _model_keys(model: str, name: str) -> set[str]:
    """The strings a result may name the model by: the file, its run folder, NAME, resolved."""
    path = Path(model)
    keys = {model, name, str(path.resolve())}
    if path.name == "model.safetensors":
        keys |= {str(path.parent), str(path.parent.resolve())}
    return keys


def _matches(result: dict, keys: set[str]) -> bool:
    return result["model"] in keys or str(Path(result["model"]).resolve()) in keys


def measured_psnr(results: list[dict], model: str, name: str, sigma: float) -> dict[str, str]:
    """``{"<folder>_psnr": "28.2043"}`` for every result of ``model`` (or ``name``) at ``sigma``."""
    found: dict[str, str] = {}
    keys = _model_keys(model, name)
    for result in results:
        if result.get("sigma") != sigma or not _matches(result, keys):
            continue
        folder = Path(result["data"]).name.lower()
        found[f"{folder}_psnr"] = f"{result['summary']['mean_psnr']:.4f}"
    return found


def measured_sr(results: list[dict], model: str, name: str, scales: list[int]) -> dict[str, str]:
    """``{"set5_x2_psnr": "37.1234", "set5_x2_ssim": "0.9571", ...}`` at the trained scales."""
    found: dict[str, str] = {}
    keys = _model_keys(model, name)
    for result in results:
        if result.get("scale") not in scales or not _matches(result, keys):
            continue
        folder = Path(result["data"]).name.lower()
        summary = result["summary"]
        found[f"{folder}_x{result['scale']}_psnr"] = f"{summary['mean_psnr']:.4f}"
        found[f"{folder}_x{result['scale']}_ssim"] = f"{summary['mean_ssim']:.4f}"
    return found


def _training_rows(metadata: dict[str, str]) -> list[tuple[str, str]]:
    """The model card rows on how the weights were trained, from the file's metadata."""
    get = metadata.get
    return [
        ("data", get("train_data", "?")),
        ("protocol", f"{get('protocol', '?')}, optimiser {get('optimizer', '?')}"),
        ("budget", f"{get('steps', '?')} steps in {get('minutes', '?')} minutes"),
        ("hardware", f"{get('hardware', '?')} (torch {get('torch', '?')})"),
    ]


def _architecture(model: Any, metadata: dict[str, str], descriptions: dict[str, str]) -> str:
    """The model's architecture in words, from its family's template and its config."""
    arch = metadata.get("n3net_arch", model.arch)
    config = dict(model.config)
    config["n3_blocks"] = config.get("n_blocks", 1) - 1
    return descriptions[arch].format(**config) if arch in descriptions else arch


def measured_correspondences(documents: list[dict], model: str, name: str) -> dict[str, str]:
    """``{"synthetic_map20": "0.4321", "synthetic_hard_map20": ..., "test_seed": "2", ...}``."""
    keys = _model_keys(model, name)
    for document in documents:
        for result in document["results"]:
            if result.get("data") != "synthetic" or not _matches(result, keys):
                continue
            settings = document.get("settings", {})
            found = {f"synthetic_{key}": f"{result['summary'][key]:.4f}" for key in CORR_METRICS}
            for tier, summary in result.get("tiers", {}).items():
                found[f"synthetic_{tier}_map20"] = f"{summary['map20']:.4f}"
            found["test_split"] = (
                f"seed {settings.get('seed', '?')}, {result['summary'].get('n_pairs', '?')} "
                f"pairs of {settings.get('points', '?')} matches"
            )
            return found
    return {}


_AUTHORS_CORR_STEPS = 500_000  # Yi et al.'s and the paper's training steps (batch 32, N = 2000)


def _corr_budget(metadata: dict[str, str]) -> str:
    """E.g. ``"2,000 steps of batch 16 pairs of 1,000 matches, 0.4 % of the steps"``."""
    try:
        steps, batch = int(metadata["steps"]), int(metadata["batch_size"])
        points = int(metadata["points"])
    except (KeyError, ValueError):
        return "see the budget above"
    share = 100 * steps / _AUTHORS_CORR_STEPS
    return (
        f"{steps:,} steps of batch {batch} pairs of {points:,} matches, {share:.2g} % of the steps"
    )


def correspondences_card(
    name: str, model: Any, metadata: dict[str, str], documents: list[dict], keys: set[str]
) -> str:
    """The Markdown model card of shipped correspondence weights."""
    description = _architecture(model, metadata, _CORR_DESCRIPTION)
    parameters = sum(p.numel() for p in model.parameters())
    rows = [
        ("task", "inlier classification of putative two-view matches (`correspondences`): one "
                 "logit per match; relative pose by the weighted eight-point algorithm"),
        ("use", f"`n3net evaluate --task correspondences --model {name} --data synthetic` (or "
                f"`--data DIR` of `.npz` pairs); in Python `load_model(\"{name}\")(xs, mask)`"),
        ("architecture", f"{description}; {parameters:,} parameters"),
        *_training_rows(metadata),
        ("weights", f"{metadata.get('weights', '?')}; validation mAP@20 "
                    f"{metadata.get('val_map', '?')}"),
    ]  # fmt: skip
    table, seen = [], set()
    for document in documents:
        for result in document["results"]:
            if result.get("data") != "synthetic":
                continue
            mine = _matches(result, keys) or _matches(
                {"model": result["model"].removesuffix("+ransac")}, keys
            )
            label = result["model"]
            if mine:
                label = name + ("+ransac" if result["model"].endswith("+ransac") else "")
            if label in seen:
                continue
            seen.add(label)
            summary, tiers = result["summary"], result.get("tiers", {})
            cells = [f"{summary[key]:.3f}" for key in ("map5", "map10", "map20")]
            cells += [f"{tiers[t]['map20']:.3f}" if t in tiers else "–" for t in CORR_TIERS]
            cells.append(f"{summary['f1']:.3f}")
            bold = "**" if mine else ""
            table.append((not mine, f"| {bold}`{label}`{bold} | " + " | ".join(cells) + " |"))
    table.sort(key=lambda row: row[0])  # this model first, the others as the files list them
    lines = [
        f"# {name}",
        "",
        f"{description.split(' (')[0]} for classifying putative two-view correspondences as "
        "inliers or outliers, trained by the n3net project; no third-party weights.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        "",
        "Measured with `n3net evaluate --task correspondences --data synthetic` on the synthetic "
        f"test split ({metadata.get('test_split', '?')}): pose mAP at 5°/10°/20° of "
        "max(rotation error, translation error), mAP@20 per tier of the true-match share "
        "(easy ≥ 30 %, medium 12–30 %, hard < 12 %), inlier F1 at logit > 0. `NAME+ransac`: "
        "OpenCV RANSAC on the matches NAME predicts as inliers. The paper reports no synthetic "
        "numbers; on real pairs it reports +10–30 % mAP for the N3 block over CNNet, after "
        f"{_AUTHORS_CORR_STEPS:,} steps of batch 32 pairs of 2,000 matches (Yi et al.'s budget; "
        f"these weights: {_corr_budget(metadata)}).",
        "",
        "| model | mAP@5 | mAP@10 | mAP@20 | easy | medium | hard | F1 |",
        "|---|---|---|---|---|---|---|---|",
        *(row for _, row in table),
        "",
    ]
    return "\n".join(lines)


_DENOISE_DESCRIPTION = {
    "n3net": "N3Net (the paper's denoiser, §5.1: {n_blocks} DnCNN blocks of depth {depth} with "
    "{features} features, {n3_blocks} image N3 blocks with k = {k}, {patch_size}×{patch_size} "
    "patches at stride {stride}, a {search_window}×{search_window}-patch search window, "
    "{embed_channels}-channel embedding and temperature CNNs of {embed_depth} layers)",
    "n3net-light": "N3Net-light ({n_blocks} DnCNN blocks of depth {depth} with {features} "
    "features, {n3_blocks} image N3 block with k = {k}, {patch_size}×{patch_size} patches at "
    "stride {stride}, a {search_window}×{search_window}-patch search window)",
    "dncnn": "DnCNN-{depth} ({depth} conv layers of {features} features, batch norm, residual "
    "learning)",
}
# The authors' denoising budget: 400 images x 128 crops x 50 epochs in their code and released
# models (the paper states 512 crops per image and epoch).
_AUTHORS_CROPS = 400 * 128 * 50
_PAPER_CROPS = 400 * 512 * 50


def _budget(metadata: dict[str, str]) -> str:
    """Steps, crops and time of a denoising run, next to the authors' budget."""
    steps = int(metadata.get("steps", "0") or 0)
    protocol = metadata.get("protocol", "")
    batch = metadata.get("batch_size") or next(iter(re.findall(r"batch (\d+)", protocol)), "")
    minutes = float(metadata.get("minutes", "nan"))
    text = f"{steps:,} steps in {minutes:.1f} minutes ({minutes / 60:.2f} h)"
    if batch:
        crops = steps * int(batch)
        text = (
            f"{steps:,} steps of batch {batch} = {crops:,} crops in {minutes:.1f} minutes "
            f"({minutes / 60:.2f} h); the authors trained on {_AUTHORS_CROPS / 1e6:.2f}M crops "
            f"(their code; the paper states {_PAPER_CROPS / 1e6:.2f}M): "
            f"{100 * crops / _AUTHORS_CROPS:.1f} % of it"
        )
    return text


def denoise_card(
    name: str, model: Any, metadata: dict[str, str], results: list[dict], keys: set[str]
) -> str:
    """The Markdown model card of shipped denoising weights."""
    table = _results_table()
    description = _architecture(model, metadata, _DENOISE_DESCRIPTION)
    parameters = sum(p.numel() for p in model.parameters())
    sigma = float(metadata["sigma"])
    cells: dict[tuple[str, str], tuple[float, float | None]] = {}  # (label, data) -> psnr, ssim
    labels: list[str] = []
    for result in results:
        if result.get("sigma") != sigma or "scale" in result:
            continue
        label = name if _matches(result, keys) else table.sr_label(result["model"])
        data = Path(result["data"]).name.lower()
        summary = result["summary"]
        cells[(label, data)] = (summary["mean_psnr"], summary.get("mean_ssim"))
        if label not in labels:
            labels.append(label)
    others = [label for label in labels if label != name]
    datasets = [d for d in table.DATASETS if (name, d) in cells]
    datasets += sorted({d for (label, d) in cells if label == name} - set(datasets))
    published = [
        (title, fam)
        for fam, title in (("n3net", "N3Net (paper)"), ("dncnn", "DnCNN (published)"),
                           ("bm3d", "BM3D (published)"))
        if any(table.PAPER.get((fam, d), {}).get(int(sigma)) for d in datasets)
    ]  # fmt: skip
    header = ["data", "**this model** (PSNR / SSIM)", *(f"{o} (this − it)" for o in others)]
    header += [title for title, _ in published]
    lines_table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for data in datasets:
        psnr, ssim = cells[(name, data)]
        row = [f"{table.DATA_NAMES.get(data, data)}, σ = {sigma:g}"]
        row.append(f"**{psnr:.2f}**" + (f" / {ssim:.3f}" if ssim is not None else ""))
        for other in others:
            value = cells.get((other, data))
            row.append("–" if value is None else f"{value[0]:.2f} ({psnr - value[0]:+.2f})")
        for _, fam in published:
            value = table.PAPER.get((fam, data), {}).get(int(sigma))
            row.append(f"{value:.2f}" if value is not None else "–")
        lines_table.append("| " + " | ".join(row) + " |")
    protocol = metadata.get("protocol", "?")
    if "loss" in metadata:
        protocol += f", loss {metadata['loss'].replace(' x ', ' × ')}"
    if "recipe" in metadata:
        protocol += f"; {metadata['recipe']}"
    rows = [
        ("task", f"grey Gaussian denoising (`denoise`), σ = {sigma:g} on the 0–255 scale"),
        ("use", f"`n3net denoise IN -o OUT --sigma {sigma:g} --model {name}`; `n3net evaluate "
                f"--model {name} --sigma {sigma:g}`; in Python `load_model(\"{name}\")`"),
        ("architecture", f"{description}; {parameters:,} parameters"),
        ("data", metadata.get("train_data", "?")),
        ("protocol", protocol),
        ("budget", _budget(metadata)),
        ("hardware", f"{metadata.get('hardware', '?')} (torch {metadata.get('torch', '?')})"),
        ("weights", f"{metadata.get('weights', '?')}; validation PSNR "
                    f"{metadata.get('val_psnr', '?')} dB (the held-out training images)"),
    ]  # fmt: skip
    short = description.split(" (")[0]
    lines = [
        f"# {name}",
        "",
        f"{short} for grey images with additive white Gaussian noise of "
        f"σ = {sigma:g}, trained by the n3net project; no third-party weights.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        "",
        "Measured with `n3net evaluate` (the authors' protocol: noise from seed 1234 on the CPU, "
        "PSNR of the unclipped output on the 0–255 scale), mean PSNR (dB) / SSIM, next to the "
        "other models of the result files and the published numbers (N3Net: the paper's Table 3; "
        "DnCNN and BM3D as the literature prints them). The default of `n3net denoise` at a σ "
        "is the shipped model with the best measured BSD68 PSNR (`n3net models` marks it).",
        "",
        *lines_table,
        "",
    ]
    return "\n".join(lines)


def _results_table() -> Any:
    sys.path.insert(0, str(HERE))
    import results_table

    return results_table


def model_card(
    name: str, model: Any, metadata: dict[str, str], results: list[dict], keys: set[str]
) -> str:
    """The Markdown model card of shipped super-resolution weights."""
    table = _results_table()
    description = _architecture(model, metadata, _SR_DESCRIPTION)
    parameters = sum(p.numel() for p in model.parameters())
    scales = [int(s) for s in metadata.get("scales", "2,3,4").split(",")]
    mine = [r for r in results if "scale" in r and _matches(r, keys)]
    others = [
        r
        for r in results
        if "scale" in r
        and not _matches(r, keys)
        and table.sr_family(r["model"]) in ("bicubic", "vdsr", "n3net-sr")
        and table.sr_family(r["model"]) != table.sr_family(name)
    ]
    cells = table.sr_cells([{**r, "model": name} for r in mine] + others)
    cells = {key: value for key, value in cells.items() if key[2] in scales}
    rows = [
        ("task", f"super-resolution (`sr`) of the luminance, one model for "
                 f"{', '.join(f'×{s}' for s in scales)}; colour channels stay bicubic"),
        ("use", f"`n3net upscale IN -o OUT --scale S --model {name}`; "
                f"`n3net evaluate --task sr --model {name}`"),
        ("scales", ", ".join(f"×{s}" for s in scales)),
        ("architecture", f"{description}; {parameters:,} parameters"),
        *_training_rows(metadata),
        ("weights", f"{metadata.get('weights', '?')}; validation Y-PSNR "
                    f"{metadata.get('val_psnr', '?')} dB (mean of the scales, BSDS500 test crops)"),
    ]  # fmt: skip
    lines = [
        f"# {name}",
        "",
        f"{description.split(' (')[0]} for single-image super-resolution, trained by the n3net "
        "project; no third-party weights.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        "",
        "Measured with `n3net evaluate --task sr` (Y channel of BT.601, `scale` pixels shaved, "
        "MATLAB-style bicubic degradation); Y-PSNR (dB) / SSIM, the published numbers in "
        "brackets (VDSR and bicubic: VDSR's Table 2; N3Net-SR: the N3Net paper, Set5 only):",
        "",
        table.sr_tables(cells) if cells else "(no results)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .safetensors model file (or its run folder)")
    parser.add_argument("name", help="the pretrained name, e.g. n3net-gray-sigma25, vdsr-x234")
    parser.add_argument("--results", nargs="+", type=Path, required=True, help="evaluate JSONs")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help=argparse.SUPPRESS)
    parser.add_argument("--hardware", help="what the run trained on, replacing the file's entry")
    parser.add_argument("--note", type=Path, help="a Markdown file appended to the model card")
    parser.add_argument("--force", action="store_true", help="replace a shipped NAME")
    args = parser.parse_args(argv)

    from n3net.models import arch_info, load_model, save_model
    from n3net.models._registry import _RESERVED

    if args.model.is_dir():
        args.model = args.model / "model.safetensors"
    try:
        model = load_model(args.model)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = {k: v for k, v in model.metadata.items() if k not in _RESERVED}
    if args.hardware is not None:
        if not args.hardware.strip():
            print("error: --hardware needs a description", file=sys.stderr)
            return 2
        metadata["hardware"] = args.hardware
    note = ""
    if args.note is not None:
        try:
            note = args.note.read_text(encoding="utf-8").strip()
        except OSError as error:
            print(f"error: cannot read the note {args.note} ({error.strerror})", file=sys.stderr)
            return 2
        if not note:
            print(f"error: the note {args.note} is empty", file=sys.stderr)
            return 2
    results, documents = [], []
    for path in args.results:
        try:
            documents.append(json.loads(path.read_text()))
            results += documents[-1]["results"]
        except (OSError, ValueError, KeyError) as error:
            print(f"error: {path} is not an n3net evaluate result file ({error})", file=sys.stderr)
            return 2
    if not args.weights.is_dir():
        print(f"error: weights folder not found: {args.weights}", file=sys.stderr)
        return 2
    target = args.weights / f"{args.name}.safetensors"
    card = target.with_suffix(".md")
    arch = model.metadata["n3net_arch"]
    task = metadata.get("task", arch_info(arch).task)
    write_card, card_results = model_card, results  # the card and what it is written from
    if task == "correspondences":
        if metadata.get("data") != "synthetic" or args.name != f"{arch}-synth":
            print(
                f"error: {arch} weights trained on the synthetic benchmark are named "
                f"{arch}-synth, not {args.name}",
                file=sys.stderr,
            )
            return 2
        measured = measured_correspondences(documents, str(args.model), args.name)
        if not measured:
            print(f"error: no synthetic result for {args.model} in the results", file=sys.stderr)
            return 2
        write_card, card_results = correspondences_card, documents

    elif task == "sr":
        scales = [int(s) for s in metadata.get("scales", "2,3,4").split(",")]
        expected = f"{arch}-x{''.join(map(str, scales))}"
        if args.name != expected:
            print(
                f"error: super-resolution weights of {arch} for scales {scales} are named "
                f"{expected}, not {args.name}",
                file=sys.stderr,
            )
            return 2
        measured = measured_sr(results, str(args.model), args.name, scales)
        missing = [s for s in scales if f"set5_x{s}_psnr" not in measured]
        if missing:
            listed = ", ".join(f"x{s}" for s in missing)
            print(f"error: no Set5 result for {args.model} at {listed} in the results",
                  file=sys.stderr)  # fmt: skip
            return 2
    else:
        if "sigma" not in metadata:
            print(f"error: {args.model} has no sigma metadata", file=sys.stderr)
            return 2
        measured = measured_psnr(results, str(args.model), args.name, float(metadata["sigma"]))
        if "bsd68_psnr" not in measured:
            print(
                f"error: no BSD68 result for {args.model} at sigma {metadata['sigma']} in the "
                "results",
                file=sys.stderr,
            )
            return 2
        write_card = denoise_card
    for path in (target, card):
        if path is not None and path.exists() and not args.force:
            print(f"error: {path} exists (use --force to replace it)", file=sys.stderr)
            return 2
    save_model(model, target, {**metadata, **measured})  # same tensors, written atomically
    if card is not None:
        keys = _model_keys(str(args.model), args.name)
        text = write_card(
            args.name, model, {**model.metadata, **metadata, **measured}, card_results, keys
        )
        if note:
            text = text.rstrip("\n") + "\n\n" + note + "\n"
        partial = card.with_name(card.name + ".partial")
        partial.write_text(text)
        partial.replace(card)
    print(f"wrote {target}: " + ", ".join(f"{k} {v}" for k, v in sorted(measured.items())))
    if card is not None:
        print(f"wrote {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
