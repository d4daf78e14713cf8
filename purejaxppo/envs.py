"""Environments: a gymnax env by name or instance, vectorised over `num_envs`, with episode
statistics tracked beside the env state.

gymnax >= 1.0 steps return `obs, state, reward, terminated, truncated, info`, auto-reset on
either flag, and keep the pre-reset observation in `info["final_observation"]`; that is the
observation the learner bootstraps from when an episode is truncated.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

from purejaxppo.config import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class EnvSpec:
    """A gymnax env with its params and what the learner needs to know of its spaces."""

    env: Environment
    params: Any
    name: str
    obs_shape: tuple[int, ...]
    discrete: bool
    action_dim: int  # number of actions (discrete) or of action dimensions (continuous)
    action_low: np.ndarray | None = None  # [action_dim], continuous only
    action_high: np.ndarray | None = None


class EnvRunner(NamedTuple):
    """The state of N envs between steps. Shapes: obs `[N, *obs_shape]`, others `[N]`."""

    env_state: Any
    obs: jax.Array
    episode_return: jax.Array  # running undiscounted return of the current episode
    episode_length: jax.Array


class EnvStep(NamedTuple):
    """What one step of N envs yields; all `[N]` but obs `[N, *obs_shape]`.

    `episode_return` / `episode_length` are those of the episode that ended at this step,
    meaningful only where `terminated | truncated`.
    """

    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


def registered_env_names() -> list[str]:
    return list(gymnax.registered_envs)


def make_env(env: str | Environment, env_params: Any = None) -> EnvSpec:
    """Build an `EnvSpec` from a registered gymnax name or a user's `Environment` instance.

    Raises `ConfigError` for an unknown name or an unsupported action space.
    """
    if isinstance(env, str):
        names = registered_env_names()
        if env not in names:
            close = difflib.get_close_matches(env, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown environment {env!r}{hint} (known: {', '.join(names)})")
        instance, default_params = gymnax.make(env)
    elif isinstance(env, Environment):
        instance, default_params = env, env.default_params
    else:
        raise ConfigError(f"env must be a gymnax environment name or instance, got {type(env)}")
    params = default_params if env_params is None else env_params
    obs_shape = tuple(int(d) for d in instance.observation_space(params).shape)
    space = instance.action_space(params)
    if isinstance(space, spaces.Discrete):
        return EnvSpec(instance, params, instance.name, obs_shape, True, int(space.n))
    if isinstance(space, spaces.Box):
        shape = tuple(space.shape) or (1,)
        if len(shape) != 1:
            raise ConfigError(f"continuous actions must be a vector, got shape {space.shape}")
        dim = shape[0]
        low = np.broadcast_to(np.asarray(space.low, np.float32), (dim,)).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), (dim,)).copy()
        return EnvSpec(instance, params, instance.name, obs_shape, False, dim, low, high)
    raise ConfigError(f"unsupported action space {type(space).__name__} for {instance.name}")


def env_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """Map a policy action to what the env takes: continuous samples are clipped to bounds."""
    if spec.discrete:
        return action
    return jnp.clip(action, spec.action_low, spec.action_high)


def reset_envs(spec: EnvSpec, key: jax.Array, num_envs: int) -> EnvRunner:
    """Reset `num_envs` envs with independent keys."""
    keys = jax.random.split(key, num_envs)
    obs, env_state = jax.vmap(spec.env.reset, in_axes=(0, None))(keys, spec.params)
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return EnvRunner(env_state, _as_float(obs), zeros, jnp.zeros((num_envs,), jnp.int32))


def step_envs(
    spec: EnvSpec, keys: jax.Array, runner: EnvRunner, action: jax.Array
) -> tuple[EnvRunner, EnvStep]:
    """Step N envs once with keys `[N]` (auto-resetting finished ones); update episode stats."""
    step = jax.vmap(spec.env.step, in_axes=(0, 0, 0, None))
    obs, env_state, reward, terminated, truncated, info = step(
        keys, runner.env_state, env_action(spec, action), spec.params
    )
    reward = reward.astype(jnp.float32)
    episode_return = runner.episode_return + reward
    episode_length = runner.episode_length + 1
    done = terminated | truncated
    result = EnvStep(
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        final_obs=_as_float(info["final_observation"]),
        episode_return=episode_return,
        episode_length=episode_length,
    )
    runner = EnvRunner(
        env_state,
        _as_float(obs),
        jnp.where(done, 0.0, episode_return),
        jnp.where(done, 0, episode_length),
    )
    return runner, result


def _as_float(obs: jax.Array) -> jax.Array:
    return obs.astype(jnp.float32)
