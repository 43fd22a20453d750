"""Training of the Gaussian denoisers (`n3net train`): config, data, loop, checkpoints, DDP.

Example:
    >>> from n3net.train import resolve_config, train  # doctest: +SKIP
    >>> train(resolve_config(sets=["model.arch='dncnn'", "train.max_minutes=10"]))  # doctest: +SKIP
"""

from n3net.train.config import DataConfig, ModelConfig, RunConfig, TrainConfig, resolve_config
from n3net.train.loop import TrainResult, train

__all__ = [
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "resolve_config",
    "train",
]
