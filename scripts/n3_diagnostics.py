"""What the N3 blocks of a trained denoiser actually do: selection statistics and ablations.

Answers "does the network use its neighbours, and how sharply does it pick them?" for an N3Net
(or any model with ``N3Block2d`` modules) on a few images of a benchmark folder:

* per N3 block: quantiles of the query temperatures, and per neighbour round the *effective
  number of candidates* ``exp(entropy)`` of the weight rows (1 = a hard pick, 224 = the whole
  15 x 15 window averaged alike) and the largest weight of each row;
* mean PSNR (authors' protocol noise, unclipped) of the model as trained and of ablations that
  replace the blocks' selection rule: ``hard`` (top-k one-hot on the same logits), ``uniform``
  (temperature x 1e6: every round averages its window alike) and ``self`` (every neighbour volume
  is the block's input: the blocks add no information).

Usage::

    python scripts/n3_diagnostics.py MODEL_OR_CHECKPOINT --data "$N3NET_DATA/bsd68" \
        [--images 4] [--sigma 25] [--json out.json]

``MODEL_OR_CHECKPOINT`` is a model name, a ``.safetensors`` model file, or a training
checkpoint (``last.pt``, read with ``weights_only=True``; its current weights are used).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from n3net.blocks.n3_image import N3Block2d
from n3net.eval.benchmarks import evaluate_denoiser, protocol_files

VARIANTS = ("trained", "hard", "uniform", "self")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def load_any(source: str) -> nn.Module:
    """A model from a name, a model file or a training checkpoint (current weights)."""
    from n3net.models import create_model, load_model

    if source.endswith(".pt"):
        from n3net.train.checkpoint import load_checkpoint
        from n3net.train.config import RunConfig

        state = load_checkpoint(source)
        config = RunConfig.from_dict(state["config"])  # as a resumed run reads it
        model = create_model(config.model.arch, **config.model.kwargs)
        model.load_state_dict(state["model"])
        return model
    return load_model(source)


def n3_blocks(model: nn.Module) -> list[N3Block2d]:
    blocks = [m for m in model.modules() if isinstance(m, N3Block2d)]
    if not blocks:
        raise ValueError("the model has no N3 blocks")
    return blocks


class _Stats:
    """Running selection statistics of one block: temperatures, effective candidates, top weight."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.temperatures: list[Tensor] = []
        self.effective: list[list[Tensor]] = [[] for _ in range(k)]
        self.top: list[list[Tensor]] = [[] for _ in range(k)]

    def add(self, weights: Tensor, temperature: Tensor | None) -> None:
        # weights (..., K, U); padded query slots of the fast path count too (a few per cent).
        w = weights.detach().float()
        logw = torch.where(w > 0, w.log(), torch.zeros_like(w))
        entropy = -(w * logw).sum(-1)  # (..., K)
        eff = entropy.exp().reshape(-1, self.k)
        top = w.amax(-1).reshape(-1, self.k)
        for j in range(self.k):
            self.effective[j].append(eff[:, j])
            self.top[j].append(top[:, j])
        if temperature is not None:
            self.temperatures.append(temperature.detach().float().reshape(-1))

    def summary(self) -> dict[str, Any]:
        q = torch.tensor(_QUANTILES)
        out: dict[str, Any] = {}
        if self.temperatures:
            t = torch.cat(self.temperatures)
            out["temperature_quantiles"] = dict(
                zip(map(str, _QUANTILES), torch.quantile(_sample(t), q).tolist(), strict=True)
            )
        out["rounds"] = [
            {
                "round": j + 1,
                "effective_candidates_median": float(
                    _sample(torch.cat(self.effective[j])).median()
                ),
                "effective_candidates_mean": float(torch.cat(self.effective[j]).mean()),
                "top_weight_median": float(_sample(torch.cat(self.top[j])).median()),
            }
            for j in range(self.k)
        ]
        return out


def _sample(x: Tensor, n: int = 1 << 20) -> Tensor:
    """At most ``n`` evenly spaced values (torch.quantile refuses very large inputs)."""
    return x if x.numel() <= n else x[:: math.ceil(x.numel() / n)]


@contextlib.contextmanager
def variant(model: nn.Module, name: str, stats: list[_Stats] | None = None) -> Iterator[None]:
    """Temporarily change every N3 block's selection (see the module docstring)."""
    blocks = n3_blocks(model)
    saved = [(b.knn.rule, b.temperature_scale) for b in blocks]
    try:
        for i, b in enumerate(blocks):
            if name == "hard":
                b.knn.rule = "hard"
            elif name == "uniform":
                b.temperature_scale = b.temperature_scale * 1e6
            elif name == "self":

                def same(x: Tensor, values: Tensor | None = None, _b: N3Block2d = b) -> Tensor:
                    y = x if values is None else values
                    return y[:, None].expand(-1, _b.k, -1, -1, -1)

                b.neighbours = same  # type: ignore[method-assign]
            elif name != "trained":
                raise ValueError(f"unknown variant {name!r}")
            if stats is not None:

                def recording(
                    logits: Tensor,
                    temperature: Tensor | None = None,
                    mask: Tensor | None = None,
                    _f: Any = b.knn.forward,
                    _s: _Stats = stats[i],
                ) -> Tensor:
                    w = _f(logits, temperature, mask)
                    _s.add(w, temperature)
                    return w

                b.knn.forward = recording  # type: ignore[method-assign]
        yield
    finally:  # instance attributes shadow the methods: dropping them restores the originals
        for b, (rule, scale) in zip(blocks, saved, strict=True):
            b.knn.rule, b.temperature_scale = rule, scale
            b.__dict__.pop("neighbours", None)
            b.knn.__dict__.pop("forward", None)


def diagnose(
    model: nn.Module, folder: str, n_images: int, sigma: float, variants: tuple[str, ...]
) -> dict[str, Any]:
    model.eval()
    files = protocol_files(folder)[:n_images]
    blocks = n3_blocks(model)
    result: dict[str, Any] = {"data": folder, "images": [f.name for f in files], "sigma": sigma}
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:  # a folder of the first N images: the protocol noise stays the same
            (Path(tmp) / f.name).symlink_to(f.resolve())
        stats = [_Stats(b.k) for b in blocks]
        psnr: dict[str, float] = {}
        for name in variants:
            print(f"evaluating {name} ...", file=sys.stderr, flush=True)
            with variant(model, name, stats if name == "trained" else None):
                res = evaluate_denoiser(model, tmp, sigma, progress=False)
            psnr[name] = res["summary"]["mean_psnr"]
    result["mean_psnr"] = psnr
    result["blocks"] = [s.summary() for s in stats]
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"{result['data']}, {len(result['images'])} images, sigma {result['sigma']:g}")
    base = result["mean_psnr"].get("trained")
    for name, value in result["mean_psnr"].items():
        delta = "" if base is None or name == "trained" else f"  ({value - base:+.3f})"
        print(f"  {name:>8}: {value:.3f} dB{delta}")
    for i, block in enumerate(result["blocks"], 1):
        tq = block.get("temperature_quantiles")
        if tq:
            print(f"  block {i} temperature quantiles " + " ".join(f"{v:.3g}" for v in tq.values()))
        for r in block["rounds"]:
            median, mean = r["effective_candidates_median"], r["effective_candidates_mean"]
            print(
                f"    round {r['round']}: effective candidates median {median:.1f} "
                f"(mean {mean:.1f}), top weight median {r['top_weight_median']:.3f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model name, .safetensors file or training checkpoint .pt")
    parser.add_argument("--data", required=True, help="benchmark image folder")
    parser.add_argument("--images", type=int, default=4, help="first N images (protocol order)")
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    try:
        if args.images < 1:
            raise ValueError("--images must be >= 1")
        model = load_any(args.model)
        result = diagnose(model, args.data, args.images, args.sigma, tuple(args.variants))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
