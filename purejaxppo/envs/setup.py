"""Environments: a gymnax env by name or instance, vectorised over `num_envs`, with episode
statistics tracked beside the env state.

gymnax >= 1.0 steps return `obs, state, reward, terminated, truncated, info`, auto-reset on
either flag, and keep the pre-reset observation in `info["final_observation"]`; that is the
observation the learner bootstraps from when an episode is truncated. Names of other suites
(`brax:ant`, `xminigrid:MiniGrid-Empty-8x8`) are resolved by `purejaxppo.envs.suites`, whose
envs follow the same interface.

Observations reach the network as float32: a `Discrete` observation space is one-hot
encoded. A `Box` action space of shape `()` gets actions of shape `[1]` from the policy,
passed to the env as scalars.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

from purejaxppo.envs.suites import make_named_env
from purejaxppo.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class EnvSetup:
    """A gymnax env with its params and what the learner needs to know of its spaces."""

    env: Environment
    params: Any
    name: str
    obs_shape: tuple[int, ...]
    discrete: bool
    action_dim: int  # number of actions (discrete) or of action dimensions (continuous)
    action_low: np.ndarray | None = None  # [action_dim], continuous only
    action_high: np.ndarray | None = None
    obs_classes: int | None = None  # Discrete observations: one-hot over this many classes
    scalar_action: bool = False  # Box action space of shape (): the env takes a scalar


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


def make_env(env: str | Environment, env_params: Any = None) -> EnvSetup:
    """Build an `EnvSetup` from an env name (`CartPole-v1`, `brax:ant`, ...; see
    `purejaxppo.envs.suites`) or a user's gymnax-1.0 `Environment` instance.

    Raises `ConfigError` for an unknown name, a suite that is not installed, an unsupported
    observation or action space, or a `reset` whose observation disagrees with its space.
    """
    if isinstance(env, str):
        instance, default_params = make_named_env(env)
    elif isinstance(env, Environment):
        instance, default_params = env, env.default_params
    else:
        raise ConfigError(f"env must be an environment name or gymnax instance, got {type(env)}")
    params = default_params if env_params is None else env_params
    obs_shape, obs_classes = observation_layout(instance, params)
    space = instance.action_space(params)
    common = {"env": instance, "params": params, "name": instance.name, "obs_shape": obs_shape}
    if isinstance(space, spaces.Discrete):
        return EnvSetup(**common, discrete=True, action_dim=int(space.n), obs_classes=obs_classes)
    if isinstance(space, spaces.Box):
        shape = tuple(int(d) for d in space.shape)
        if len(shape) > 1:
            raise ConfigError(
                f"{instance.name}: continuous actions must be a vector or a scalar, "
                f"got shape {shape}"
            )
        dim = shape[0] if shape else 1
        low = np.broadcast_to(np.asarray(space.low, np.float32), (dim,)).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), (dim,)).copy()
        return EnvSetup(
            **common,
            discrete=False,
            action_dim=dim,
            action_low=low,
            action_high=high,
            obs_classes=obs_classes,
            scalar_action=not shape,
        )
    raise ConfigError(f"unsupported action space {type(space).__name__} for {instance.name}")


def observation_layout(env: Environment, params: Any) -> tuple[tuple[int, ...], int | None]:
    """`(obs_shape, obs_classes)` as the network sees observations: a `Box` keeps its shape,
    a `Discrete(n)` becomes a one-hot `[n]`. Checks the shape of what `reset` returns
    (traced only, nothing runs)."""
    space = env.observation_space(params)
    obs = jax.eval_shape(lambda key: env.reset(key, params)[0], jax.random.key(0))
    if isinstance(space, spaces.Discrete):
        shape, classes, declared = (int(space.n),), int(space.n), ()
    elif isinstance(space, spaces.Box):
        shape, classes = tuple(int(d) for d in space.shape), None
        declared = shape
    else:
        raise ConfigError(
            f"{env.name}: observation space {type(space).__name__} is not supported "
            "(Box or Discrete)"
        )
    if not isinstance(obs, jax.ShapeDtypeStruct) or tuple(obs.shape) != declared:
        got = obs.shape if isinstance(obs, jax.ShapeDtypeStruct) else type(obs).__name__
        raise ConfigError(
            f"{env.name}: reset returns observations {got}, but its observation space "
            f"says {declared}"
        )
    return shape, classes


def env_action(setup: EnvSetup, action: jax.Array) -> jax.Array:
    """Map a policy action to what the env takes: continuous samples are clipped to bounds."""
    if setup.discrete:
        return action
    action = jnp.clip(action, setup.action_low, setup.action_high)
    return action[..., 0] if setup.scalar_action else action


def reset_envs(setup: EnvSetup, key: jax.Array, num_envs: int) -> EnvRunner:
    """Reset `num_envs` envs with independent keys."""
    return reset_envs_with_keys(setup, jax.random.split(key, num_envs))


def reset_envs_with_keys(setup: EnvSetup, keys: jax.Array) -> EnvRunner:
    """Reset N envs, env i with `keys[i]` (`[N]` keys)."""
    num_envs = keys.shape[0]
    obs, env_state = jax.vmap(setup.env.reset, in_axes=(0, None))(keys, setup.params)
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return EnvRunner(env_state, observe(setup, obs), zeros, jnp.zeros((num_envs,), jnp.int32))


def step_envs(
    setup: EnvSetup, keys: jax.Array, runner: EnvRunner, action: jax.Array
) -> tuple[EnvRunner, EnvStep]:
    """Step N envs once with keys `[N]` (auto-resetting finished ones); update episode stats."""
    step = jax.vmap(setup.env.step, in_axes=(0, 0, 0, None))
    obs, env_state, reward, terminated, truncated, info = step(
        keys, runner.env_state, env_action(setup, action), setup.params
    )
    reward = reward.astype(jnp.float32)
    episode_return = runner.episode_return + reward
    episode_length = runner.episode_length + 1
    done = terminated | truncated
    result = EnvStep(
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        final_obs=observe(setup, info["final_observation"]),
        episode_return=episode_return,
        episode_length=episode_length,
    )
    runner = EnvRunner(
        env_state,
        observe(setup, obs),
        jnp.where(done, 0.0, episode_return),
        jnp.where(done, 0, episode_length),
    )
    return runner, result


def observe(setup: EnvSetup, obs: jax.Array) -> jax.Array:
    """Env observations `[N, ...]` as the network takes them: float32 `[N, *obs_shape]`."""
    if setup.obs_classes is not None:
        return jax.nn.one_hot(obs, setup.obs_classes, dtype=jnp.float32)
    return obs.astype(jnp.float32)
