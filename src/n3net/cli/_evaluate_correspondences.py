"""`n3net evaluate --task correspondences`: inlier classification and relative pose.

Models: the pose baselines (``eight-point``, ``ransac``, ``ransac-10k``, ``lmeds``,
``oracle``), trained names, ``.safetensors`` model files or training run folders (their
``model.safetensors``); a learned model's name ending in ``+ransac`` (or every learned model
with ``--ransac-on-predicted``) is scored as "ours + RANSAC": OpenCV RANSAC on the matches it
predicts as inliers. Data: ``synthetic`` (``--seed`` split, ``--pairs`` pairs of ``--points``
matches) or folders of ``.npz`` pairs (see docs/correspondences.md). Every argument is checked
before any work starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from n3net.cli._errors import CliError

SYNTHETIC = "synthetic"
RANSAC_SUFFIX = "+ransac"  # a learned model, then OpenCV RANSAC on its predicted inliers
_DEFAULT_SEED = 2  # the synthetic test split
_BATCH = 8
_PROTOCOL = (
    "per pair: logit > 0 predicts an inlier (labels: symmetric epipolar distance < 1e-4 under "
    "the true pose); precision, recall, F1 per pair, averaged; pose: learned models by the "
    "weighted eight-point algorithm with weights relu(tanh(logit)) and the cheirality check on "
    "the top 10 % of matches by logit, baselines by their own estimate, NAME+ransac by OpenCV "
    "RANSAC (threshold 0.001, confidence 0.999, 1000 iterations) on the matches NAME predicts "
    "as inliers (its precision, recall, F1: of the matches RANSAC keeps); errors in degrees "
    "(failures 180 and 90); mAP@t = mean over k < t/5 of the share of pairs with max(err_q, "
    "err_t) < 5(k+1); tiers by the share of true matches: hard < 0.12 <= medium < 0.3 <= easy"
)


def _model_file(name: str) -> str:
    """A run folder stands for its best weights; anything else is passed on as it is."""
    path = Path(name)
    if path.is_dir():
        best = path / "model.safetensors"
        if not best.is_file():
            raise FileNotFoundError(f"run folder '{name}' has no model.safetensors")
        return str(best)
    return name


def _is_learned(name: str) -> bool:
    """Whether a model name stands for trained weights (not a pose baseline)."""
    from n3net.models import arch_info, list_architectures

    return not (name in list_architectures() and not arch_info(name).needs_weights)


def _with_ransac(name: str) -> list[str]:
    """A learned model's name and its ``+ransac`` variant; any other name alone."""
    if _is_learned(name) and not name.endswith(RANSAC_SUFFIX):
        return [name, name + RANSAC_SUFFIX]
    return [name]


def _known_models_text() -> str:
    """The names ``--model`` takes for correspondences, as one clause of an error message."""
    from n3net.models import arch_info, list_architectures, list_pretrained, model_metadata

    trained = [
        name
        for name in list_pretrained()
        if _task_of(model_metadata(name).get("n3net_arch", "")) == "correspondences"
    ]
    baselines = [
        name
        for name in list_architectures()
        if not _is_learned(name) and arch_info(name).task == "correspondences"
    ]
    shipped = ", ".join(trained) if trained else "none shipped yet"
    return (
        f"trained correspondence weights: {shipped}; baselines: {', '.join(baselines)}; or a "
        ".safetensors file or run folder (a learned model also as NAME+ransac)"
    )


def _task_of(arch: str) -> str:
    """The task of a registered architecture, '?' for an unknown one."""
    from n3net.models import arch_info, list_architectures

    return arch_info(arch).task if arch in list_architectures() else "?"


def _load(name: str, device: str) -> Any:
    """Load one model, refusing models of another task (one line, before any work)."""
    from n3net.models import arch_info, list_architectures, list_pretrained, load_model

    if name.endswith(RANSAC_SUFFIX) and not Path(name).exists():
        base = name[: -len(RANSAC_SUFFIX)]
        if not _is_learned(base):
            raise CliError(f"{RANSAC_SUFFIX} follows a learned model, not the baseline {base}")
        from n3net._checks import require_extra
        from n3net.models.geometric import PredictedRansac

        learned = _load(base, device)
        require_extra("cv2", f"{name} (RANSAC on the predicted inliers)", extra="geometry")
        return PredictedRansac(learned)
    if name in list_architectures() and not arch_info(name).needs_weights:
        if arch_info(name).task != "correspondences":
            raise CliError(
                f"model {name} is a {arch_info(name).task} model, not a correspondences one"
            )
        model = load_model(name, device=device)
    else:
        known = name in list_pretrained() or name in list_architectures()
        if not known and not Path(name).exists():
            raise CliError(f"unknown correspondence model '{name}'; {_known_models_text()}")
        model = load_model(_model_file(name), device=device)
        arch = model.metadata.get("n3net_arch", "?")
        task = _task_of(arch)
        if task != "correspondences":
            raise CliError(f"model {name} ({arch}) is a {task} model, not a correspondences one")
    if getattr(model, "method", None) is not None:  # the OpenCV baselines: fail now, not later
        from n3net._checks import require_extra

        require_extra("cv2", f"the {name} baseline", extra="geometry")
    return model


class _Memo(torch.nn.Module):
    """A learned model that remembers its logits per batch, so that NAME and NAME+ransac of one
    call run the network once per batch (keyed by the batch's bytes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.metadata = getattr(model, "metadata", {})
        self.logits: dict[bytes, torch.Tensor] = {}

    def clear(self) -> None:
        self.logits.clear()

    def forward(self, xs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        import hashlib

        digest = hashlib.sha256(xs.detach().cpu().numpy().tobytes())
        if mask is not None:
            digest.update(mask.detach().cpu().numpy().tobytes())
        key = digest.digest()
        if key not in self.logits:
            self.logits[key] = self.model(xs, mask)
        return self.logits[key]


def _share_forward(models: dict[str, Any]) -> list[_Memo]:
    """Let every NAME+ransac reuse the logits of NAME when both are evaluated."""
    from n3net.models.geometric import PredictedRansac

    memos = []
    for name, model in models.items():
        base = name[: -len(RANSAC_SUFFIX)]
        if isinstance(model, PredictedRansac) and base in models:
            if not isinstance(models[base], _Memo):
                models[base] = _Memo(models[base])
                memos.append(models[base])
            model.model = models[base]
    return memos


def _check_args(args: argparse.Namespace) -> None:
    if not args.model:
        raise CliError(
            "--task correspondences needs --model NAME... (e.g. ransac oracle, or a "
            ".safetensors file / run folder)"
        )
    if args.pairs < 1:
        raise CliError(f"--pairs must be >= 1, got {args.pairs}")
    if args.points < 8:
        raise CliError(f"--points must be >= 8, got {args.points}")
    if args.seed is not None and args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")


def _data_sources(names: list[str]) -> list[tuple[str, list[Path] | None]]:
    """``("synthetic", None)`` or ``(folder, its .npz files)`` per --data entry."""
    from n3net.cli.evaluate import _resolve_data, _unique
    from n3net.data.correspondences import list_npz_pairs

    sources: list[tuple[str, list[Path] | None]] = []
    for name in _unique(names):
        if name == SYNTHETIC:
            sources.append((SYNTHETIC, None))
            continue
        folder = _resolve_data(name)
        sources.append((folder, list_npz_pairs(folder)))
    return sources


def _pairs(source: tuple[str, list[Path] | None], args: argparse.Namespace) -> list[dict]:
    from n3net.data.correspondences import load_npz_pair, synthetic_pairs
    from n3net.data.synthetic import SyntheticConfig

    name, files = source
    if files is None:
        return synthetic_pairs(args.seed, args.pairs, SyntheticConfig(num_points=args.points))
    return [load_npz_pair(path) for path in files]


def _print_table(results: list[dict[str, Any]]) -> None:
    from n3net.data.correspondences import TIERS

    model_w = max([5, *(len(r["model"]) for r in results)])
    data_w = max([4, *(len(r["data"]) for r in results)])
    header = f"  {'model':<{model_w}}  {'data':<{data_w}}  {'tier':<7}  {'pairs':>5}"
    print("pose mAP (max of rotation and translation error) and inlier classification per pair")
    print(
        f"{header}  {'mAP5':>6}  {'mAP10':>6}  {'mAP20':>6}  {'prec':>6}  {'recall':>6}  {'F1':>6}"
    )
    for r in results:
        for tier, s in [("all", r["summary"]), *((t, r["tiers"][t]) for t in TIERS)]:
            print(
                f"  {r['model']:<{model_w}}  {r['data']:<{data_w}}  {tier:<7}  "
                f"{s['n_pairs']:>5}  {s['map5']:6.3f}  {s['map10']:6.3f}  {s['map20']:6.3f}  "
                f"{s['precision']:6.3f}  {s['recall']:6.3f}  {s['f1']:6.3f}"
            )


def run(args: argparse.Namespace) -> int:
    """Evaluate every (model, data): print a table, optionally write JSON."""
    import torch

    from n3net import __version__
    from n3net._checks import resolve_device
    from n3net.cli.evaluate import _check_json_target, _unique, _write_json
    from n3net.eval.correspondences import evaluate_correspondences

    _check_args(args)
    if args.seed is None:
        args.seed = _DEFAULT_SEED
    resolve_device(args.device)
    sources = _data_sources(args.data)
    target = _check_json_target(args.json, args.overwrite)
    if target is not None:
        from n3net._files import check_writable

        check_writable(target.parent)
    names = _unique(args.model)
    if args.ransac_on_predicted:
        names = _unique([variant for name in names for variant in _with_ransac(name)])
    models = {name: _load(name, args.device) for name in names}
    memos = _share_forward(models)

    results: list[dict[str, Any]] = []
    for source in sources:
        pairs = _pairs(source, args)
        for memo in memos:
            memo.clear()
        for name, model in models.items():
            result = evaluate_correspondences(
                model, pairs, batch_size=_BATCH, device=args.device, progress=True,
                description=f"{name} {Path(source[0]).name}",
            )  # fmt: skip
            results.append({"model": name, "data": source[0], **result})
    _print_table(results)

    if target is not None:
        settings = {
            "task": "correspondences",
            "models": names,
            "data": [source for source, _ in sources],
            "seed": args.seed,
            "pairs": args.pairs,
            "points": args.points,
            "device": args.device,
            "protocol": _PROTOCOL,
            "n3net_version": __version__,
            "torch_version": torch.__version__,
        }
        _write_json(target, {"settings": settings, "results": results}, args.overwrite)
        print(f"wrote {target}")
    return 0
