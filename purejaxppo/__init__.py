"""purejaxppo: PPO whose whole training loop is one jitted, vmappable JAX function."""

from purejaxppo.config import ConfigError, Hyperparams, PPOConfig, validate_hyperparams
from purejaxppo.envs import EnvSpec, make_env
from purejaxppo.train import Metrics, Trainer, TrainOutput, TrainState, make_train

__all__ = [
    "ConfigError",
    "EnvSpec",
    "Hyperparams",
    "Metrics",
    "PPOConfig",
    "TrainOutput",
    "TrainState",
    "Trainer",
    "make_env",
    "make_train",
    "validate_hyperparams",
]

__version__ = "0.1.0"
