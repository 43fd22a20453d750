"""Ship a trained model file: copy it into the package with its measured test PSNR recorded.

Usage::

    python scripts/ship_model.py runs/x/model.safetensors NAME --results R.json [R.json ...]
        [--force]

Reads the ``n3net evaluate --json`` result files, takes the mean PSNR of the model file on each
test folder at the file's own sigma, and writes ``src/n3net/models/weights/NAME.safetensors``:
the same tensors and metadata plus ``<folder>_psnr`` entries (e.g. ``bsd68_psnr``), which
``n3net models`` lists and ``n3net.inference.default_model`` ranks by. The result files must
name the model by this very file (or by NAME, for a model already shipped); an existing NAME is
only replaced with ``--force``. Writes atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "n3net" / "models" / "weights"


def measured_psnr(results: list[dict], model: str, name: str, sigma: float) -> dict[str, str]:
    """``{"<folder>_psnr": "28.2043"}`` for every result of ``model`` (or ``name``) at ``sigma``."""
    found: dict[str, str] = {}
    keys = {model, name, str(Path(model).resolve())}
    for result in results:
        if result["sigma"] != sigma:
            continue
        if result["model"] not in keys and str(Path(result["model"]).resolve()) not in keys:
            continue
        folder = Path(result["data"]).name.lower()
        found[f"{folder}_psnr"] = f"{result['summary']['mean_psnr']:.4f}"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .safetensors model file from n3net train")
    parser.add_argument("name", help="the pretrained name, e.g. n3net-gray-sigma25")
    parser.add_argument("--results", nargs="+", type=Path, required=True, help="evaluate JSONs")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true", help="replace a shipped NAME")
    args = parser.parse_args(argv)

    from n3net.models import load_model, save_model
    from n3net.models._registry import _RESERVED

    try:
        model = load_model(args.model)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = {k: v for k, v in model.metadata.items() if k not in _RESERVED}
    if "sigma" not in metadata:
        print(f"error: {args.model} has no sigma metadata", file=sys.stderr)
        return 2
    results = []
    for path in args.results:
        try:
            results += json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError) as error:
            print(f"error: {path} is not an n3net evaluate result file ({error})", file=sys.stderr)
            return 2
    psnr = measured_psnr(results, str(args.model), args.name, float(metadata["sigma"]))
    if "bsd68_psnr" not in psnr:
        print(
            f"error: no BSD68 result for {args.model} at sigma {metadata['sigma']} in the results",
            file=sys.stderr,
        )
        return 2
    target = args.weights / f"{args.name}.safetensors"
    if target.exists() and not args.force:
        print(f"error: {target} exists (use --force to replace it)", file=sys.stderr)
        return 2
    save_model(model, target, {**metadata, **psnr})  # same tensors, written atomically
    print(f"wrote {target}: " + ", ".join(f"{k} {v}" for k, v in sorted(psnr.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
