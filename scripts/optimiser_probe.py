"""Watch the first steps of a training run from the inside: what the optimiser does to the net.

Usage (from the repository root, ``N3NET_DATA`` set)::

    python scripts/optimiser_probe.py [--task sr] [--arch vdsr] [--steps 30] [--every 5]
        [--set SECTION.KEY=VALUE ...]

Builds the run ``n3net train`` would build from the same ``--set`` assignments (the sr task's
``paper`` preset by default: SGD at lr 0.1, momentum 0.9, VDSR's adjustable gradient clip),
trains it for ``--steps`` steps on the task's batches at a constant lr, and prints every
``--every`` steps, on that step's batch:

* ``loss``: the task's training loss;
* ``clipped``: the share of this step's gradient elements that the task's own gradient clip
  changes (those past an element bound, or all of them when a norm clip rescales);
* ``residual`` / ``target``: the standard deviation of what the network adds to its input and
  of what it should add (super-resolution: the bicubic input; denoising: the noisy one);
* ``alive``: the share of ReLU channels that are positive somewhere in their feature map, over
  all ReLUs and samples (1: none dead);
* ``moved``: the largest change of any weight since step 0.

It explains a failing recipe in a minute of CPU where a validation curve only shows the
failure (docs/super-resolution.md, "Which optimiser at our budgets").
"""

from __future__ import annotations

import argparse
import sys
from functools import partial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sr", choices=("sr", "denoise"))
    parser.add_argument("--arch", default="vdsr")
    parser.add_argument("--preset", default="paper", help="the task's preset ('' for none)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be >= 1")

    import torch
    from torch import nn

    from n3net.models import create_model
    from n3net.train.config import resolve_config
    from n3net.train.loop import train_step
    from n3net.train.tasks import task_class

    sets = [f'task.name="{args.task}"', f'model.arch="{args.arch}"', 'train.device="cpu"',
            f"train.batch_size={args.batch_size}", f"train.seed={args.seed}"]  # fmt: skip
    if args.preset:
        sets.append(f'data.preset="{args.preset}"')
    try:
        config = resolve_config(None, [*sets, *args.set])
    except (ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    task = task_class(config.task.name)(config)
    try:
        task.load(with_validation=False)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.manual_seed(config.train.seed)
    model = create_model(config.model.arch, **config.model.kwargs)
    optimisation = task.optimisation(model)
    lr = config.train.lr
    for group in optimisation.optimizer.param_groups:
        group["lr"] = lr
    alive: list[float] = []
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(
                lambda _m, _i, out: alive.append(float((out > 0).flatten(2).any(-1).float().mean()))
            )
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    stream = task.batches(0, 0, 1, torch.device("cpu"))
    print(f"{config.model.arch}, task {config.task.name}, {type(optimisation.optimizer).__name__} "
          f"at lr {lr:g}, clip {optimisation.clip}, batch {config.train.batch_size}")  # fmt: skip
    try:
        for step in range(args.steps):
            batch = next(stream)
            report = step % args.every == 0 or step == args.steps - 1
            if report:  # the gradient this step will see (the same batch and weights)
                model.zero_grad(set_to_none=True)
                task.loss(model, batch, step).backward()
                params = [p for p in model.parameters() if p.grad is not None]
                before = [p.grad.clone() for p in params]
                if optimisation.clip is not None:  # the task's own clip, whatever its kind
                    optimisation.clip(params, lr)
                changed = sum(int((p.grad != g).sum()) for p, g in zip(params, before, strict=True))
                clipped = changed / sum(g.numel() for g in before)
                model.zero_grad(set_to_none=True)
            loss = train_step(
                model,
                optimisation.optimizer,
                partial(task.loss, model, batch, step),
                optimisation.clip,
                lr,
            )
            if report:
                alive.clear()
                with torch.no_grad():
                    inputs, targets = batch[0], batch[1]
                    residual = model(inputs) - inputs
                    moved = max(
                        float((p - start[n]).abs().max()) for n, p in model.named_parameters()
                    )
                print(f"step {step:4d}  loss {float(loss):10.4f}  clipped {clipped:.2f}  "
                      f"residual {float(residual.std()):.4f}  target "
                      f"{float((targets - inputs).std()):.4f}  alive "
                      f"{sum(alive) / max(len(alive), 1):.2f}  moved {moved:.4f}",
                      flush=True)  # fmt: skip
    finally:
        stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
