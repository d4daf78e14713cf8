"""Wrap any pure JAX environment as the gymnax-1.0 environment the trainer steps.

`FunctionalEnv` takes two pure functions of one (unbatched) environment,

    reset(key) -> (obs, state)
    step(key, state, action) -> (obs, state, reward, terminated)

and adds what the library relies on: a time limit that ends an episode as *truncated*
(never terminated), the reset of a finished episode inside `step`, and the observation
reached before that reset in `info["final_observation"]`, which the learner bootstraps
from when an episode was truncated. The Brax and XLand-MiniGrid suites
(`purejaxppo/envs/suites.py`) are built on it, so time limits and auto-resets have one
implementation, `time_limit_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

from purejaxppo.errors import ConfigError

ResetFn = Callable[[jax.Array], tuple[Any, Any]]
StepFn = Callable[[jax.Array, Any, Any], tuple[Any, Any, Any, Any]]


@struct.dataclass
class TimeLimit:
    """Params of a `FunctionalEnv`: its episode length in steps (static; None: no limit)."""

    max_steps_in_episode: int | None = struct.field(pytree_node=False, default=None)


@struct.dataclass
class TimeLimitState:
    """The wrapped env's state and the steps taken in its current episode (int32 `[]`)."""

    env_state: Any
    time: jax.Array


def time_limit_step(
    reset: ResetFn,
    step: StepFn,
    key: jax.Array,
    state: TimeLimitState,
    action: Any,
    max_steps: int | None,
) -> tuple[Any, TimeLimitState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """One gymnax-1.0 step of one env: `obs, state, reward, terminated, truncated, info`.

    `truncated` is set when the episode reaches `max_steps` steps without terminating (an
    episode ends by exactly one of the two). At either, the env is reset with a fresh key;
    `obs` is then the first observation of the next episode and `info["final_observation"]`
    the one the finished episode reached (otherwise the two are equal). Reward float32 `[]`,
    flags bool `[]`.
    """
    key_step, key_reset = jax.random.split(key)
    obs_next, env_state, reward, terminated = step(key_step, state.env_state, action)
    terminated = jnp.asarray(terminated).astype(bool)
    time = state.time + 1
    at_limit = jnp.zeros((), bool) if max_steps is None else time >= max_steps
    truncated = at_limit & ~terminated
    done = terminated | truncated
    obs_reset, env_state_reset = reset(key_reset)
    stepped = TimeLimitState(env_state, time)
    restarted = TimeLimitState(env_state_reset, jnp.zeros_like(time))
    next_state = _select(done, restarted, stepped)
    obs = _select(done, obs_reset, obs_next)
    reward = jnp.asarray(reward, jnp.float32)
    return obs, next_state, reward, terminated, truncated, {"final_observation": obs_next}


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leafwise `where(pred, on_true, on_false)` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class FunctionalEnv(Environment):
    """A gymnax-1.0 `Environment` made of a pure `reset` and `step` of one env.

    - `reset(key) -> (obs, state)`; `step(key, state, action) -> (obs, state, reward,
      terminated)` with `terminated` a bool (or 0/1) scalar: a true end of the episode.
      Both must be jittable; the library vmaps them over envs.
    - `observation_space`: a gymnax `spaces.Box` (its shape is that of `obs`) or
      `spaces.Discrete` (an integer `obs`, one-hot encoded for the network).
    - `action_space`: `spaces.Discrete(n)` (actions are int32 scalars) or `spaces.Box`
      with shape `(d,)` or `()` (actions float32, clipped to the bounds).
    - `max_steps_in_episode`: the time limit, ending episodes as truncated; None for
      none (evaluation then needs an explicit `max_steps`).
    - `draw` (optional): one wrapped env state (on the host, no env axis) as an RGB image
      `uint8 [H, W, 3]`, for `purejaxppo render`.

    Pass it to `make_train(config, env=...)` or `make_env(...)` like any gymnax env.
    """

    def __init__(
        self,
        name: str,
        reset: ResetFn,
        step: StepFn,
        observation_space: spaces.Box | spaces.Discrete,
        action_space: spaces.Box | spaces.Discrete,
        max_steps_in_episode: int | None = None,
        draw: Callable[[Any], np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        limit = max_steps_in_episode
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1
        ):
            raise ConfigError(
                f"max_steps_in_episode must be a positive integer or None, got {limit!r}"
            )
        self._name = name
        self._reset = reset
        self._step = step
        self._observation_space = observation_space
        self._action_space = action_space
        self._max_steps = None if limit is None else int(limit)
        self.draw = draw

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> TimeLimit:
        return TimeLimit(self._max_steps)

    def observation_space(self, params: TimeLimit | None = None) -> spaces.Box | spaces.Discrete:
        return self._observation_space

    def action_space(self, params: TimeLimit | None = None) -> spaces.Box | spaces.Discrete:
        return self._action_space

    def reset(self, key: jax.Array, params: TimeLimit | None = None) -> tuple[Any, TimeLimitState]:
        obs, env_state = self._reset(key)
        return obs, TimeLimitState(env_state, jnp.zeros((), jnp.int32))

    def step(
        self,
        key: jax.Array,
        state: TimeLimitState,
        action: Any,
        params: TimeLimit | None = None,
    ) -> tuple[Any, TimeLimitState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        limit = (self.default_params if params is None else params).max_steps_in_episode
        return time_limit_step(self._reset, self._step, key, state, action, limit)
