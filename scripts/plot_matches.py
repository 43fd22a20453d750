"""Draw one synthetic image pair's matches, coloured by a model's prediction and the true label.

Every match is a segment from its keypoint in image 1 to its keypoint in image 2, both in
pixels of one 640 x 480 frame (the flow a match implies): true matches form one smooth field,
wrong ones cut across it. Colours: green a true inlier predicted inlier, red a false positive
(predicted inlier, labelled outlier), orange a false negative (labelled inlier, rejected), grey
a true negative. The title gives the counts, precision, recall and the pose errors.

The model is anything ``n3net evaluate --task correspondences`` takes: a baseline name
(``oracle``, ``ransac``, ...), a trained name, a ``.safetensors`` file, a run folder, or one of
those with ``+ransac``. Needs matplotlib (``pip install 'n3net[train]'``).

Usage::

    python scripts/plot_matches.py --model ransac --seed 2 --index 0 --out matches.png
    python scripts/plot_matches.py --model runs/cnnet-n3 --index 5 --out docs/matches.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CATEGORIES = (  # drawn in this order, so the rare kinds end on top
    ("true negative", "#b8b8b8", 0.3, 0.25),
    ("true positive", "#1a9850", 0.8, 0.9),
    ("false negative", "#fd8d3c", 0.9, 0.9),
    ("false positive", "#d7191c", 0.9, 0.9),
)  # name, colour, line width, opacity


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="baseline name, model file, run folder")
    parser.add_argument("--seed", type=int, default=2, help="synthetic split (default: 2, test)")
    parser.add_argument("--index", type=int, default=0, help="pair of the split (default: 0)")
    parser.add_argument("--points", type=int, default=2000, help="matches (default: 2000)")
    parser.add_argument("--out", type=Path, default=Path("matches.png"), help="the PNG to write")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return parser.parse_args(argv)


def categories(predicted: Any, truth: Any) -> Any:
    """Index into :data:`CATEGORIES` per match from two (N,) bool arrays.

    Example:
        >>> import numpy as np
        >>> categories(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)).tolist()
        [1, 3, 2, 0]
    """
    import numpy as np

    return np.select(
        [predicted & truth, predicted & ~truth, ~predicted & truth], [1, 3, 2], default=0
    )


def predict(model_name: str, seed: int, index: int, points: int, device: str) -> dict[str, Any]:
    """The pair, the model's verdict per match and its pose errors (degrees)."""
    import torch

    from n3net.cli._evaluate_correspondences import _load
    from n3net.data.correspondences import collate_pairs, synthetic_pair
    from n3net.data.synthetic import SyntheticConfig
    from n3net.eval.correspondences import estimate_poses
    from n3net.geometry import pose_errors

    config = SyntheticConfig(num_points=points)
    pair = synthetic_pair(seed, index, config)
    model = _load(model_name, device)
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    batch = collate_pairs([pair], device)
    with torch.inference_mode():
        estimate = estimate_poses(model, batch)
        err_q, err_t = pose_errors(
            estimate.rotation, estimate.translation, batch["R"], batch["t"], estimate.success
        )
    return {
        "pair": pair,
        "config": config,
        "predicted": (estimate.logits[0] > 0).cpu().numpy(),
        "err_q": float(err_q[0]),
        "err_t": float(err_t[0]),
    }


def plot(result: dict[str, Any], title: str, target: Path) -> dict[str, int]:
    """Draw the matches into ``target``; the number of matches per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.collections import LineCollection

    pair, config = result["pair"], result["config"]
    centre = (np.array([config.width, config.height]) - 1) / 2
    x1 = pair["xs"][:, :2] * pair["focal"] + centre
    x2 = pair["xs"][:, 2:] * pair["focal"] + centre
    kind = categories(result["predicted"], pair["labels"].astype(bool))
    counts: dict[str, int] = {}
    figure, axes = plt.subplots(figsize=(9.6, 7.8), dpi=100)
    for code, (name, colour, width, alpha) in enumerate(CATEGORIES):
        chosen = kind == code
        counts[name] = int(chosen.sum())
        segments = np.stack([x1[chosen], x2[chosen]], 1)
        label = f"{name} ({counts[name]})"
        lines = LineCollection(segments, colors=colour, linewidths=width, alpha=alpha, label=label)
        axes.add_collection(lines)
        axes.scatter(x1[chosen, 0], x1[chosen, 1], s=2, color=colour, alpha=alpha, linewidths=0)
    axes.set_xlim(0, config.width - 1)
    axes.set_ylim(config.height - 1, 0)  # image rows grow downwards
    axes.set_aspect("equal")
    axes.set_xlabel("x (pixels; each match from its image-1 point to its image-2 point)")
    axes.set_ylabel("y (pixels)")
    tp, fp, fn = counts["true positive"], counts["false positive"], counts["false negative"]
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    axes.set_title(
        f"{title}\nprecision {precision:.3f}, recall {recall:.3f}; pose error: rotation "
        f"{result['err_q']:.2f}°, translation {result['err_t']:.2f}°",
        fontsize=10,
    )
    axes.legend(loc="upper right", fontsize=8, framealpha=0.9)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    plt.close(figure)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Predict and draw; 0 on success, 2 with a one-line error."""
    args = parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_matches.py needs matplotlib: pip install 'n3net[train]'", file=sys.stderr)
        return 2
    from n3net._checks import MissingExtraError
    from n3net.cli._errors import CliError

    try:
        result = predict(args.model, args.seed, args.index, args.points, args.device)
    except (CliError, MissingExtraError, FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    pair = result["pair"]
    title = (
        f"{args.model} on synthetic pair {args.index} of split {args.seed}: {args.points} "
        f"matches, {int(pair['labels'].sum())} labelled inliers (drawn share "
        f"{float(pair['inlier_ratio']):.2f})"
    )
    counts = plot(result, title, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
