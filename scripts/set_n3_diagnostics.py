"""What a trained CNNet + N3's set N3 block selects: temperatures and neighbour purity per tier.

For each synthetic pair of a split, the N3 block's first relaxed-KNN round (Eq. 8: a softmax
over ``-|e_i - e_j|^2 * T_i`` of every other match of the pair) is recomputed from the block's
input, and reported per difficulty tier, over the pair's true inliers as queries:

* ``T`` — the median of the predicted inverse temperatures ``T_i`` (the paper's linear ``T_i``
  may be negative; ``temperature="exp"`` keeps it positive);
* ``effective`` — the median effective number of candidates ``exp(entropy)`` of a query's
  weights (N - 1 when the weights are uniform, 1 for hard KNN);
* ``purity`` — the mean weight a query puts on true inliers, against the pair's inlier share
  (what uniform weights give): above it, the neighbour volumes carry inlier evidence.

Usage (from the repository root)::

    python scripts/set_n3_diagnostics.py --model runs/corr/cnnet-n3-seed0 [--seed 2] [--pairs 60]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a cnnet-n3 model file or run folder")
    parser.add_argument("--seed", type=int, default=2, help="synthetic split (default: 2, test)")
    parser.add_argument("--pairs", type=int, default=60, help="pairs 0 .. PAIRS - 1")
    parser.add_argument("--points", type=int, default=2000, help="matches per pair")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.points < 3:
        parser.error("--pairs must be >= 1 and --points >= 3")
    return args


def first_round(layer: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse temperatures (N,) and first-round weights (N, N) of one pair's block input.

    Shape:
        x: (1, N, C) -> T: (N,), weights: (N, N), rows summing to 1, zero diagonal.
    """
    e = layer.embedding(x)[0]  # (N, E)
    t = layer.inverse_temperature(x)[0, :, 0]  # (N,)
    logits = -torch.cdist(e, e).square() * t[:, None]
    logits.fill_diagonal_(-math.inf)  # self excluded
    return t, torch.softmax(logits, dim=1)


def diagnose(model: torch.nn.Module, pairs: list[dict]) -> dict[str, dict[str, float]]:
    """Per tier (and ``all``): median T, median effective candidates, mean purity, share."""
    from n3net.data.correspondences import tier_of

    captured: list[torch.Tensor] = []
    hook = model.n3.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    try:
        with torch.no_grad():
            for pair in pairs:
                captured.clear()
                model(torch.from_numpy(pair["xs"])[None])
                t, w = first_round(model.n3, captured[0])
                inlier = torch.from_numpy(pair["labels"])
                if inlier.sum() < 2:
                    continue
                entropy = -(w * w.clamp_min(1e-30).log()).sum(1)
                purity = w[inlier][:, inlier].sum(1)  # weight on other true inliers
                share = (inlier.sum().item() - 1) / (len(inlier) - 1)
                row = (t[inlier].median().item(), entropy[inlier].exp().median().item(),
                       purity.mean().item(), share)  # fmt: skip
                for tier in (tier_of(float(pair["inlier_ratio"])), "all"):
                    rows.setdefault(tier, []).append(row)
    finally:
        hook.remove()
    return {
        tier: {
            "pairs": len(values),
            "T": statistics.median(v[0] for v in values),
            "effective": statistics.median(v[1] for v in values),
            "purity": statistics.fmean(v[2] for v in values),
            "share": statistics.fmean(v[3] for v in values),
        }
        for tier, values in rows.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; 0, or 2 (one line on stderr) for a model that does not load or has no
    set N3 block."""
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from n3net.data.correspondences import synthetic_pairs
    from n3net.data.synthetic import SyntheticConfig
    from n3net.models import load_model

    path = Path(args.model)
    try:
        model = load_model(path / "model.safetensors" if path.is_dir() else path)
    except (ValueError, OSError) as error:
        print(f"set_n3_diagnostics: {error}", file=sys.stderr)
        return 2
    if getattr(model, "n3", None) is None:
        print(f"set_n3_diagnostics: {args.model} has no set N3 block", file=sys.stderr)
        return 2
    pairs = synthetic_pairs(args.seed, args.pairs, SyntheticConfig(num_points=args.points))
    result = diagnose(model, pairs)
    print(f"{args.model}: split {args.seed}, pairs 0-{args.pairs - 1} of {args.points} matches; "
          "over the true inliers as queries, the N3 block's first round:")  # fmt: skip
    print("| tier | pairs | median T | median effective candidates | purity | inlier share |")
    print("|---|---|---|---|---|---|")
    for tier in ("all", "easy", "medium", "hard"):
        if tier in result:
            r = result[tier]
            print(f"| {tier} | {r['pairs']} | {r['T']:.3g} | {r['effective']:.1f} | "
                  f"{r['purity']:.3f} | {r['share']:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
