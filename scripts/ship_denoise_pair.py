"""Evaluate, compare and ship an equal-steps pair of denoising runs (N3Net and DnCNN-17).

Usage::

    python scripts/ship_denoise_pair.py N3NET_RUN DNCNN_RUN --out DIR \
        [--data set12 bsd68 urban100] [--classic docs/results/classic-*.json] \
        [--hardware TEXT] [--device cpu] [--dry-run]

Both run folders must be finished ``n3net train`` runs (``model.safetensors``, ``summary.json``,
``log.csv``) of the same noise level and the same number of steps: the paper's comparison. Writes
to DIR:

- ``eval.json``: ``n3net evaluate`` of both best-validation models on the data sets (the authors'
  protocol), reused when it already holds every (model, data set);
- ``gap.md``: the PSNR of both per data set and N3Net − DnCNN-17, next to the paper's gaps;
- ``equal-steps.md``: both validation curves at every common validation step
  (``scripts/ab_table.py``); ``compare.md`` and ``curves.png``: both curves with the elapsed
  minutes of each validation, and plotted against steps and against minutes
  (``scripts/compare_runs.py``).

Then it ships (``scripts/ship_model.py``, with ``--force``) the N3Net as
``n3net-gray-sigma<S>`` and the DnCNN-17 as ``dncnn17-gray-sigma<S>`` when its BSD68 PSNR beats
the DnCNN-17 shipped under that name (or none is shipped); each model card lists the other run
("N3Net, same steps" / "DnCNN-17, same steps"; ``card-*.json`` hold the renamed results) and the
classic baselines of the ``--classic`` result files. ``--dry-run`` stops before shipping.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ab_table  # noqa: E402
import compare_runs  # noqa: E402
import results_table  # noqa: E402
import ship_model  # noqa: E402


class PairError(ValueError):
    """A run folder that cannot be one half of the pair."""


def _run_metadata(run: Path) -> dict[str, str]:
    from n3net.models import model_metadata

    for name in ("model.safetensors", "summary.json", "log.csv"):
        if not (run / name).is_file():
            raise PairError(f"{run} is not a finished n3net train run (no {name})")
    return model_metadata(run / "model.safetensors")


def check_pair(n3net_run: Path, dncnn_run: Path) -> float:
    """The pair's sigma, after checking the architectures, the sigmas and the step counts."""
    metas = [_run_metadata(n3net_run), _run_metadata(dncnn_run)]
    for run, meta, arch in zip((n3net_run, dncnn_run), metas, ("n3net", "dncnn"), strict=True):
        if meta.get("n3net_arch") != arch:
            raise PairError(f"{run} trained {meta.get('n3net_arch')}, not {arch}")
        if meta.get("task", "denoise") != "denoise" or "sigma" not in meta:
            raise PairError(f"{run} is not a denoising run (no sigma in its metadata)")
    if metas[0]["sigma"] != metas[1]["sigma"]:
        raise PairError(f"the runs trained at sigma {metas[0]['sigma']} and {metas[1]['sigma']}")
    runs = (n3net_run, dncnn_run)
    steps = [json.loads((run / "summary.json").read_text())["steps"] for run in runs]
    if steps[0] != steps[1]:
        raise PairError(f"the runs made {steps[0]} and {steps[1]} steps, not the same number")
    return float(metas[0]["sigma"])


def _has_all(path: Path, models: list[str], data: list[str]) -> bool:
    if not path.is_file():
        return False
    done = {(r["model"], Path(r["data"]).name) for r in json.loads(path.read_text())["results"]}
    return all((m, Path(d).name) in done for m in models for d in data)


def evaluate(models: list[str], data: list[str], sigma: float, out: Path, device: str) -> Path:
    """``n3net evaluate`` of the models into ``out/eval.json`` (kept when already complete)."""
    path = out / "eval.json"
    if _has_all(path, models, data):
        print(f"{path} holds every result: not evaluated again")
        return path
    from n3net.cli.main import main as n3net

    argv = ["evaluate", "--model", *models, "--sigma", f"{sigma:g}", "--data", *data]
    code = n3net([*argv, "--json", str(path), "--overwrite", "--device", device])
    if code:
        raise PairError(f"n3net evaluate failed (exit {code})")
    return path


def paper_gap(data: str, sigma: float) -> float | None:
    """The published N3Net − DnCNN PSNR on a data set at a sigma, None where either is missing.

    Example:
        >>> f"{paper_gap('bsd68', 25):+.2f}", paper_gap('urban100', 70)
        ('+0.07', None)
    """
    n3net = results_table.PAPER.get(("n3net", data), {}).get(int(sigma))
    dncnn = results_table.PAPER.get(("dncnn", data), {}).get(int(sigma))
    return None if n3net is None or dncnn is None else n3net - dncnn


def gap_table(results: list[dict], n3net_model: str, dncnn_model: str, sigma: float) -> str:
    """Markdown: PSNR of both models per data set, N3Net − DnCNN-17 and the paper's gap."""
    psnr = {(r["model"], Path(r["data"]).name.lower()): r["summary"]["mean_psnr"] for r in results}
    lines = [
        "| data | N3Net | DnCNN-17 | N3Net − DnCNN-17 | paper |",
        "|---|---|---|---|---|",
    ]
    datasets = list(dict.fromkeys(data for model, data in psnr if model == n3net_model))
    for data in datasets:
        if (dncnn_model, data) not in psnr:
            continue
        a, b = psnr[(n3net_model, data)], psnr[(dncnn_model, data)]
        gap = paper_gap(data, sigma)
        published = "–" if gap is None else f"{gap:+.2f}"
        name = results_table.DATA_NAMES.get(data, data)
        lines.append(f"| {name}, σ = {sigma:g} | {a:.2f} | {b:.2f} | {a - b:+.2f} | {published} |")
    return "\n".join(lines)


def card_results(results: list[dict], names: dict[str, str], path: Path) -> str:
    """Write ``results`` with their models renamed by ``names`` to ``path`` (for a model card).

    The shipped model is named by its pretrained name and its partner by a label such as
    "DnCNN-17, same steps", so the card does not speak of run folders.
    """
    renamed = [{**result, "model": names.get(result["model"], result["model"])}
               for result in results]  # fmt: skip
    path.write_text(json.dumps({"results": renamed}, indent=1) + "\n")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n3net_run", type=Path, help="the finished N3Net run folder")
    parser.add_argument("dncnn_run", type=Path, help="the finished DnCNN-17 run folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--data", nargs="+", default=["set12", "bsd68", "urban100"])
    parser.add_argument(
        "--classic", nargs="*", type=Path, default=[], help="classic baselines' evaluate files"
    )
    parser.add_argument("--hardware", help="what the runs trained on (ship_model.py --hardware)")
    parser.add_argument("--device", default="cpu", help="where to evaluate (default: cpu)")
    parser.add_argument("--weights", type=Path, default=ship_model.WEIGHTS, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="evaluate and compare, ship nothing")
    args = parser.parse_args(argv)
    n3, dn = args.n3net_run, args.dncnn_run
    try:
        sigma = check_pair(n3, dn)
        missing = [path for path in args.classic if not path.is_file()]
        if missing:
            raise PairError(f"--classic file not found: {missing[0]}")
        args.out.mkdir(parents=True, exist_ok=True)
        models = [str(n3 / "model.safetensors"), str(dn / "model.safetensors")]
        eval_path = evaluate(models, args.data, sigma, args.out, args.device)
    except (PairError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = json.loads(eval_path.read_text())["results"]
    gap = gap_table(results, models[0], models[1], sigma)
    (args.out / "gap.md").write_text(gap + "\n")
    steps, _ = ab_table.table({"DnCNN-17": [dn], "N3Net": [n3]}, None)
    (args.out / "equal-steps.md").write_text(steps + "\n")
    png = ["--png", str(args.out / "curves.png"), "--force"]
    by_minutes = io.StringIO()
    with contextlib.redirect_stdout(by_minutes):
        if compare_runs.main([str(n3), str(dn), *png]):
            return 1
    (args.out / "compare.md").write_text(by_minutes.getvalue())
    print(gap)
    if args.dry_run:
        return 0
    classic = [str(path) for path in args.classic]
    extra = ["--weights", str(args.weights), "--force"]
    if args.hardware:
        extra += ["--hardware", args.hardware]
    name = f"n3net-gray-sigma{sigma:g}"
    dncnn_name = f"dncnn17-gray-sigma{sigma:g}"
    labels = {models[0]: "N3Net, same steps", models[1]: "DnCNN-17, same steps"}
    n3_results = card_results(results, {**labels, models[0]: name}, args.out / "card-n3net.json")
    if ship_model.main([str(n3), name, "--results", n3_results, *classic, *extra]):
        return 1
    mine = next(
        r["summary"]["mean_psnr"]
        for r in results
        if r["model"] == models[1] and Path(r["data"]).name.lower() == "bsd68"
    )
    shipped = args.weights / f"{dncnn_name}.safetensors"
    if shipped.is_file():
        from n3net.models import model_metadata

        before = float(model_metadata(shipped).get("bsd68_psnr", "nan"))
        if not mine > before:
            print(f"{dn}: BSD68 {mine:.4f} dB does not beat the shipped {dncnn_name} "
                  f"({before:.4f} dB): kept the shipped one")  # fmt: skip
            return 0
    dn_results = card_results(
        results, {**labels, models[1]: dncnn_name}, args.out / "card-dncnn.json"
    )
    code = ship_model.main([str(dn), dncnn_name, "--results", dn_results, *classic, *extra])
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())
