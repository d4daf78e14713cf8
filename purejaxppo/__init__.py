"""purejaxppo: PPO whose whole training loop is one jitted, vmappable JAX function.

The package is layered; each layer imports only those above it in this list (a test
checks it):

    config, presets, metrics, errors   leaves: settings, presets, numpy metric reductions
    envs/      environments: names and suites, the functional adapter, probe tasks
    ppo/       the algorithm: types, stages (rollout, GAE, loss, update), trainer, evaluate
    runs/      populations: processes, placement, compile, chunked loop, memory, bench
    outputs/   checkpoints, logs and trackers, summary, plots, console, export, render, hooks
    session    TrainSession: a run from its description to its outputs
    cli/       the command line

Every name below loads on first use: importing gymnax starts the XLA backend, and a
multi-process run must call `initialize_distributed` before that happens.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from purejaxppo.config import Hyperparams, PPOConfig, validate_hyperparams
    from purejaxppo.envs.functional import FunctionalEnv
    from purejaxppo.envs.setup import EnvSetup, make_env
    from purejaxppo.errors import ConfigError
    from purejaxppo.metrics import final_returns
    from purejaxppo.outputs.export import export_policy, load_policy
    from purejaxppo.outputs.hooks import default_hooks
    from purejaxppo.outputs.render import render_episodes
    from purejaxppo.ppo.trainer import Trainer, make_train
    from purejaxppo.ppo.types import Metrics, Policy, TrainOutput, TrainState, policy_of
    from purejaxppo.runs.evaluation import evaluate_runs
    from purejaxppo.runs.placement import make_placement
    from purejaxppo.runs.population import (
        build_population,
        train_population,
    )
    from purejaxppo.runs.processes import initialize_distributed

_LAZY = {
    "ConfigError": "purejaxppo.errors",
    "Hyperparams": "purejaxppo.config",
    "PPOConfig": "purejaxppo.config",
    "validate_hyperparams": "purejaxppo.config",
    "final_returns": "purejaxppo.metrics",
    "EnvSetup": "purejaxppo.envs.setup",
    "make_env": "purejaxppo.envs.setup",
    "FunctionalEnv": "purejaxppo.envs.functional",
    "Metrics": "purejaxppo.ppo.types",
    "Policy": "purejaxppo.ppo.types",
    "TrainOutput": "purejaxppo.ppo.types",
    "TrainState": "purejaxppo.ppo.types",
    "policy_of": "purejaxppo.ppo.types",
    "Tuning": "purejaxppo.ppo.tuning",
    "Trainer": "purejaxppo.ppo.trainer",
    "make_train": "purejaxppo.ppo.trainer",
    "evaluate_runs": "purejaxppo.runs.evaluation",
    "initialize_distributed": "purejaxppo.runs.processes",
    "make_placement": "purejaxppo.runs.placement",
    "build_population": "purejaxppo.runs.population",
    "train_population": "purejaxppo.runs.population",
    "LoopOptions": "purejaxppo.runs.spec",
    "RunSpec": "purejaxppo.runs.spec",
    "default_hooks": "purejaxppo.outputs.hooks",
    "export_policy": "purejaxppo.outputs.export",
    "load_policy": "purejaxppo.outputs.export",
    "render_episodes": "purejaxppo.outputs.render",
    "TrainSession": "purejaxppo.session",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'purejaxppo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "EnvSetup",
    "LoopOptions",
    "FunctionalEnv",
    "Hyperparams",
    "Metrics",
    "PPOConfig",
    "Policy",
    "RunSpec",
    "TrainOutput",
    "TrainSession",
    "TrainState",
    "Trainer",
    "Tuning",
    "build_population",
    "default_hooks",
    "evaluate_runs",
    "export_policy",
    "final_returns",
    "initialize_distributed",
    "load_policy",
    "make_env",
    "make_placement",
    "make_train",
    "policy_of",
    "render_episodes",
    "train_population",
    "validate_hyperparams",
]

__version__ = "0.1.0"
