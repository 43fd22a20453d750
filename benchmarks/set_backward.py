"""The set models' hand-written backward passes against autograd, in the same run.

Two operations of the correspondence networks are differentiated by hand; autograd on their
formulas is the reference:

* the continuous KNN's rounds (Eqs. 9-10): ``neural_knn(..., backward="autograd")`` keeps every
  round's ``log w``, ``w`` and ``log(1 - w)``; ``backward="analytic"`` keeps only the weights;
* context normalisation without padding: ``context_norm_reference`` (the formula) against
  ``context_norm`` (keeps the output and ``1 / std``).

Measured on the set N3 block's shapes (a batch of ``--batch`` pairs of ``--points`` matches,
every other match a candidate, ``k = 3``):

* the rounds alone, forward + backward on logits ``(B, N, N)`` with the diagonal masked;
* one training step (forward + backward) of CNNet + N3 with the layer's rule switched between
  the two, and of plain CNNet with the context norm switched between the two;
* the bytes autograd saves for the backward pass, counted by ``saved_tensors_hooks`` (exact).

Times are medians of ``--repeats`` interleaved runs after a warm-up, on ``--threads`` threads.

Usage::

    python benchmarks/set_backward.py [--batch 16] [--points 1000] [--json out.json]

Ratios are hand-written / autograd; lower is better.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import n3net.models.cnnet as cnnet_module
from n3net.knn import neural_knn
from n3net.models import create_model


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves while ``fn`` runs its forward pass."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _medians(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved: drift of the machine hits all alike
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if min(args.batch, args.points - args.k, args.repeats, args.threads) < 1:
        parser.error("--batch, --repeats and --threads must be >= 1 and --points > --k")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, n, k = args.batch, args.points, args.k

    logits = torch.randn(b, n, n) * 3
    mask = ~torch.eye(n, dtype=torch.bool).expand(b, n, n)

    def rounds(backward: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            x = logits.clone().requires_grad_()
            return neural_knn(x, k, mask=mask, validate=False, backward=backward)  # type: ignore[arg-type]

        return run

    def rounds_step(backward: str) -> Callable[[], None]:
        forward = rounds(backward)
        return lambda: forward().sum().backward()

    def step(model: torch.nn.Module, xs: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(xs).square().mean().backward()

        return run

    results: dict[str, object] = {
        "batch": b,
        "points": n,
        "k": k,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    for backward in ("autograd", "analytic"):
        results[f"rounds_saved_mb_{backward}"] = _saved_bytes(rounds(backward)) / 2**20
    times = _medians({x: rounds_step(x) for x in ("autograd", "analytic")}, args.repeats)
    results.update({f"rounds_s_{name}": value for name, value in times.items()})

    xs = torch.randn(b, n, 4)
    cnnet = create_model("cnnet").train()
    analytic_norm = cnnet_module.context_norm

    def formula_norm(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-3):
        return (
            cnnet_module.context_norm_reference(x, eps)
            if mask is None
            else analytic_norm(x, mask, eps)
        )

    def with_norm(norm: Callable[..., torch.Tensor]) -> Callable[[], None]:
        run = step(cnnet, xs)

        def switched() -> None:
            cnnet_module.context_norm = norm  # ContextNorm looks the function up per call
            try:
                run()
            finally:
                cnnet_module.context_norm = analytic_norm

        return switched

    times = _medians(
        {"formula": with_norm(formula_norm), "analytic": with_norm(analytic_norm)}, args.repeats
    )
    results.update({f"step_s_cnnet-norm-{name}": value for name, value in times.items()})
    results["ratio_norm_step_time"] = times["analytic"] / times["formula"]

    models = {"cnnet": cnnet}
    for backward in ("autograd", "analytic"):
        model = create_model("cnnet-n3").train()
        model.n3.knn.backward = backward
        models[f"cnnet-n3-{backward}"] = model
    times = _medians({name: step(model, xs) for name, model in models.items()}, args.repeats)
    results.update({f"step_s_{name}": value for name, value in times.items()})
    for backward in ("autograd", "analytic"):
        model = models[f"cnnet-n3-{backward}"]
        results[f"step_saved_mb_cnnet-n3-{backward}"] = (
            _saved_bytes(lambda m=model: m(xs).sum()) / 2**20
        )

    results["ratio_rounds_time"] = results["rounds_s_analytic"] / results["rounds_s_autograd"]
    results["ratio_rounds_saved"] = (
        results["rounds_saved_mb_analytic"] / results["rounds_saved_mb_autograd"]
    )
    results["ratio_step_time"] = (
        results["step_s_cnnet-n3-analytic"] / results["step_s_cnnet-n3-autograd"]
    )
    results["ratio_step_saved"] = (
        results["step_saved_mb_cnnet-n3-analytic"] / results["step_saved_mb_cnnet-n3-autograd"]
    )
    print(f"continuous KNN, k = {k}, logits ({b}, {n}, {n}), {args.threads} thread(s)")
    print(
        f"  rounds fwd+bwd: autograd {results['rounds_s_autograd']:.3f} s, analytic "
        f"{results['rounds_s_analytic']:.3f} s (x{results['ratio_rounds_time']:.2f}); saved "
        f"{results['rounds_saved_mb_autograd']:.0f} MB vs {results['rounds_saved_mb_analytic']:.0f}"
        f" MB (x{results['ratio_rounds_saved']:.2f})"
    )
    print(
        f"  training step (fwd+bwd): CNNet {results['step_s_cnnet']:.2f} s, CNNet + N3 autograd "
        f"{results['step_s_cnnet-n3-autograd']:.2f} s, analytic "
        f"{results['step_s_cnnet-n3-analytic']:.2f} s (x{results['ratio_step_time']:.2f}); "
        f"saved {results['step_saved_mb_cnnet-n3-autograd']:.0f} MB vs "
        f"{results['step_saved_mb_cnnet-n3-analytic']:.0f} MB (x{results['ratio_step_saved']:.2f})"
    )
    print(
        "  CNNet training step, context norm by the formula "
        f"{results['step_s_cnnet-norm-formula']:.2f} s, by hand "
        f"{results['step_s_cnnet-norm-analytic']:.2f} s"
        f" (x{results['ratio_norm_step_time']:.2f})"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
