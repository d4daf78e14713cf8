"""purejaxppo: PPO whose whole training loop is one jitted, vmappable JAX function.

The names from `envs` and `train` load on first use: they import gymnax, whose import
starts the XLA backend, and a multi-process run must call `initialize_distributed` before
that happens (see purejaxppo/distributed.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from purejaxppo.config import ConfigError, Hyperparams, PPOConfig, validate_hyperparams
from purejaxppo.distributed import initialize_distributed, train_sharded

if TYPE_CHECKING:
    from purejaxppo.envs import EnvSpec, make_env
    from purejaxppo.train import Metrics, Trainer, TrainOutput, TrainState, make_train

_LAZY = {
    "EnvSpec": "purejaxppo.envs",
    "make_env": "purejaxppo.envs",
    "Metrics": "purejaxppo.train",
    "TrainOutput": "purejaxppo.train",
    "TrainState": "purejaxppo.train",
    "Trainer": "purejaxppo.train",
    "make_train": "purejaxppo.train",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'purejaxppo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "EnvSpec",
    "Hyperparams",
    "Metrics",
    "PPOConfig",
    "TrainOutput",
    "TrainState",
    "Trainer",
    "initialize_distributed",
    "make_env",
    "make_train",
    "train_sharded",
    "validate_hyperparams",
]

__version__ = "0.1.0"
