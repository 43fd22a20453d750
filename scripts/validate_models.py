"""Score models on a training run's validation images, as the run itself validates.

Usage::

    python scripts/validate_models.py RUN_CONFIG.json MODEL [MODEL ...] [--device cpu]

``RUN_CONFIG.json`` is a run folder's ``config.json`` (its task, held-out images and fixed
validation noise or scales); each MODEL is a pretrained name, a ``.safetensors`` model file (a
run folder's ``model.safetensors``) or, for super-resolution, ``bicubic``. One line per model:
the validation values the run's ``log.csv`` would show for it (float32, eval mode). This puts a
run's validation curve next to shipped models' (for example the σ = 25 runs' 8 held-out images
against ``dncnn17-gray-sigma25``, whose BSD68 PSNR is known).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a run folder's config.json")
    parser.add_argument("models", nargs="+", help="pretrained names or .safetensors files")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from n3net.models import load_model
    from n3net.train.config import RunConfig
    from n3net.train.tasks import task_class

    if not args.config.is_file():
        print(f"error: {args.config} not found", file=sys.stderr)
        return 2
    config = RunConfig.from_dict(json.loads(args.config.read_text()))
    task = task_class(config.task.name)(config)
    task.load(with_validation=True, with_training=False)
    if not task.has_validation:
        print(f"error: the run of {args.config} holds out no validation images", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    for name in args.models:
        model = load_model(name, device=device).eval()
        with torch.inference_mode():
            values = task.validate(lambda x, m=model: m(x), device)
        print(f"{name}: {task.report(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
