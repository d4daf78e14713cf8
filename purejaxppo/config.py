"""Configuration: static settings (shapes, counts, switches) and traced hyperparameters.

`PPOConfig` is frozen and hashable: everything in it decides shapes or control flow, so a
change recompiles. `Hyperparams` is a pytree of numbers: every field may be traced, so a
`jax.vmap` over any of them (a sweep) is one compiled call.

This module imports neither jax nor numpy, so that the command line checks its input without
them: `Hyperparams` is a plain frozen dataclass, registered as a jax pytree as soon as jax is
imported (now, if it already is; else by a one-shot import hook, `_RegisterWhenJaxLoads`).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.abc
import importlib.util
import inspect
import itertools
import math
import numbers
import sys
import textwrap
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from purejaxppo.errors import ConfigError

ACTIVATIONS = ("tanh", "relu", "gelu")
NETWORKS = ("mlp", "cnn")
SCHEDULES = ("constant", "linear", "cosine")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Static settings of a PPO run: shapes, counts and switches; a change of any field
    recompiles. Each field's docstring below is its documentation (`field_docs`), which the
    README's table and the command line's `--set` help are made from."""

    env: str = "CartPole-v1"
    """Environment name: a gymnax name (`CartPole-v1`), `brax:NAME` or `xminigrid:NAME`."""

    num_envs: int = 4
    """Parallel environments per run."""

    num_steps: int = 128
    """Steps per env per rollout; an update learns from `num_envs * num_steps` samples."""

    total_timesteps: int = 500_000
    """Env steps per run, rounded down to whole updates of `num_envs * num_steps`."""

    update_epochs: int = 4
    """Passes over each rollout's samples per update."""

    num_minibatches: int = 4
    """Minibatches per epoch (one optimizer step each); must divide the update's samples."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of the policy and the value towers (each its own)."""

    activation: str = "tanh"
    """Hidden-layer activation: `tanh`, `relu` or `gelu`."""

    network: str = "mlp"
    """Torso: `mlp` (observations flattened) or `cnn` (one 3x3 convolution, for [H, W, C])."""

    recurrent: bool = False
    """A GRU between the observation embedding and the heads; minibatches are env sequences."""

    gru_size: int = 128
    """Units of the GRU (with `recurrent`)."""

    lr_schedule: str = "linear"
    """Learning rate over the run: `constant`, `linear` (to 0) or `cosine` (to 0)."""

    ent_schedule: str = "constant"
    """Entropy coefficient from `ent_coef` to `ent_coef_end`: `constant`, `linear`, `cosine`."""

    normalize_advantages: bool = True
    """Standardize advantages over each minibatch (mean 0, std 1)."""

    clip_value_loss: bool = True
    """Clip the value update to within `clip_eps` of the value that collected the data."""

    normalize_obs: bool = False
    """Normalize observations by their running mean and variance, per run (clipped to +-10)."""

    normalize_reward: bool = False
    """Divide rewards by the running std of each env's discounted return, per run."""

    target_kl_stop: bool = False
    """Skip an update's remaining epochs once an epoch's mean approximate KL > `target_kl`."""

    def __post_init__(self) -> None:
        validate_config(self)

    @property
    def batch_size(self) -> int:
        """Env steps collected per update: `num_envs * num_steps`."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def replace(self, **changes: Any) -> PPOConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BOOLEAN_SWITCHES = (
    "recurrent",
    "normalize_advantages",
    "clip_value_loss",
    "normalize_obs",
    "normalize_reward",
    "target_kl_stop",
)


def validate_config(config: PPOConfig) -> None:
    """Raise `ConfigError` with a one-line reason if `config` cannot be trained."""
    if not isinstance(config.env, str) or not config.env:
        raise ConfigError(f"env must be a non-empty environment name, got {config.env!r}")
    counts = ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches")
    for name in (*counts, "gru_size"):
        value = getattr(config, name)
        if not is_int(value) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if config.batch_size % config.num_minibatches:
        raise ConfigError(
            f"num_envs * num_steps = {config.num_envs} * {config.num_steps} = "
            f"{config.batch_size} is not divisible by num_minibatches = {config.num_minibatches}"
        )
    if config.recurrent is True and config.num_envs % config.num_minibatches:
        raise ConfigError(
            f"recurrent PPO makes minibatches of whole env sequences: num_envs = "
            f"{config.num_envs} is not divisible by num_minibatches = {config.num_minibatches}"
        )
    if config.total_timesteps < config.batch_size:
        raise ConfigError(
            f"total_timesteps = {config.total_timesteps} is less than one update "
            f"(num_envs * num_steps = {config.batch_size})"
        )
    validate_choices(config)


def validate_choices(config: PPOConfig) -> None:
    """Raise `ConfigError` if a layer list, a named choice or a switch of `config` is invalid."""
    sizes = config.hidden_sizes
    if not isinstance(sizes, tuple) or not sizes or not all(is_int(s) and s > 0 for s in sizes):
        raise ConfigError(f"hidden_sizes must be a non-empty tuple of positive ints, got {sizes!r}")
    if config.activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {config.activation!r}")
    if config.network not in NETWORKS:
        raise ConfigError(f"network must be one of {NETWORKS}, got {config.network!r}")
    for name in ("lr_schedule", "ent_schedule"):
        if getattr(config, name) not in SCHEDULES:
            raise ConfigError(f"{name} must be one of {SCHEDULES}, got {getattr(config, name)!r}")
    for name in BOOLEAN_SWITCHES:
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(config, name)!r}")


@dataclasses.dataclass(frozen=True)
class Hyperparams:
    """Traced hyperparameters: scalars for one run, or arrays `[R]` for R runs under vmap, so
    any of them can be swept in one compiled call. Each field's docstring is its
    documentation (`field_docs`)."""

    learning_rate: float = 2.5e-4
    """Adam's step size at the start of the run (then along `lr_schedule`)."""

    gamma: float = 0.99
    """Discount factor of future rewards."""

    gae_lambda: float = 0.95
    """GAE's lambda: 0 is one-step TD, 1 the Monte-Carlo return."""

    clip_eps: float = 0.2
    """PPO's clip range of the probability ratio (and of the value update)."""

    ent_coef: float = 0.01
    """Weight of the entropy bonus at the start of the run (then along `ent_schedule`)."""

    ent_coef_end: float = 0.0
    """Entropy weight reached at the end when `ent_schedule` is not constant."""

    vf_coef: float = 0.5
    """Weight of the value loss in the total loss."""

    max_grad_norm: float = 0.5
    """Clip each gradient to this global L2 norm before Adam."""

    reward_scale: float = 1.0
    """Rewards are multiplied by this before anything else."""

    target_kl: float = 0.02
    """KL threshold of `target_kl_stop`."""

    def replace(self, **changes: Any) -> Hyperparams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# Valid ranges: (low, high, low inclusive, high inclusive).
HYPERPARAM_RANGES: Mapping[str, tuple[float, float, bool, bool]] = {
    "learning_rate": (0.0, 1.0, False, True),
    "gamma": (0.0, 1.0, True, True),
    "gae_lambda": (0.0, 1.0, True, True),
    "clip_eps": (0.0, math.inf, False, False),
    "ent_coef": (0.0, math.inf, True, False),
    "ent_coef_end": (0.0, math.inf, True, False),
    "vf_coef": (0.0, math.inf, True, False),
    "max_grad_norm": (0.0, math.inf, False, False),
    "reward_scale": (0.0, math.inf, False, False),
    "target_kl": (0.0, math.inf, False, False),
}

HYPERPARAM_NAMES = tuple(f.name for f in dataclasses.fields(Hyperparams))


def is_int(value: Any) -> bool:
    """An int (Python's or numpy's: numpy registers its integers as `numbers.Integral`), not a
    bool (JSON's `true` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def field_docs(cls: type) -> dict[str, str]:
    """Each field of the dataclass `cls` and its docstring (the string literal under it in
    the class body), read from the source: the one place a field is documented."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and documented:
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


CONFIG_NAMES = tuple(f.name for f in dataclasses.fields(PPOConfig))


def _describe_range(low: float, high: float, low_in: bool, high_in: bool) -> str:
    left = "[" if low_in else "("
    right = "]" if high_in else ")"
    return f"{left}{low:g}, {high:g}{right}"


def validate_hyperparams(hp: Hyperparams) -> None:
    """Raise `ConfigError` if any (concrete) hyperparameter is not a finite number in range."""
    import numpy as np

    jax = sys.modules.get("jax")  # without jax imported, nothing can be a tracer
    tracer = jax.core.Tracer if jax is not None else ()
    for name, (low, high, low_in, high_in) in HYPERPARAM_RANGES.items():
        value = getattr(hp, name)
        if isinstance(value, tracer):
            continue
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if not np.all(np.isfinite(array)):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        above = array > low if not low_in else array >= low
        below = array < high if not high_in else array <= high
        if not np.all(above & below):
            bad = array[~(above & below)].ravel()[0] if array.ndim else array
            raise ConfigError(
                f"{name} = {float(bad):g} is out of range "
                f"{_describe_range(low, high, low_in, high_in)}"
            )


def stack_hyperparams(settings: list[Hyperparams]) -> Hyperparams:
    """Stack R scalar settings into one `Hyperparams` of `[R]` float32 arrays (a run axis)."""
    import numpy as np

    if not settings:
        raise ConfigError("at least one hyperparameter setting is needed")
    return Hyperparams(
        **{
            name: np.asarray([getattr(s, name) for s in settings], dtype=np.float32)
            for name in HYPERPARAM_NAMES
        }
    )


def register_pytree(jax: ModuleType) -> None:
    """Register `Hyperparams` with `jax` as a dataclass pytree (every field a traced leaf);
    once only, as jax refuses a second registration."""
    global _registered
    if not _registered:
        jax.tree_util.register_dataclass(Hyperparams, list(HYPERPARAM_NAMES), [])
        _registered = True


class _RegisterWhenJaxLoads(importlib.abc.MetaPathFinder):
    """An import hook that waits for `import jax` and registers `Hyperparams` the moment
    jax's own module has run, then leaves `sys.meta_path`: whoever imports jax first (the
    trainer, or a user's `jax.vmap` over `Hyperparams`) finds it a pytree."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "jax":
            return None
        sys.meta_path.remove(self)  # find jax's own spec with the other finders
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            sys.meta_path.insert(0, self)
            return spec
        loader, run = spec.loader, spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            if module.__name__ != fullname:  # a loader shared with jax's own modules
                run(module)
                return
            del loader.exec_module  # the loader's own method again
            try:
                run(module)
            except BaseException:
                sys.meta_path.insert(0, self)  # a failed import of jax may be tried again
                raise
            register_pytree(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_registered = False
if "jax" in sys.modules:
    register_pytree(sys.modules["jax"])
else:
    sys.meta_path.insert(0, _RegisterWhenJaxLoads())
