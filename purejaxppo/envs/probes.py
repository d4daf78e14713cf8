"""Probe environments: tiny gymnax envs with known values and best actions.

Each isolates one part of the learner, so a failure points at it:

- `ConstantReward`: obs 0, reward 1, one step. V = 1 (value fitting).
- `ObservationReward`: obs +-1, reward = obs, one step. V(obs) = obs (critic uses obs).
- `TwoStepDiscount`: obs 0 then 1, reward 0 then 1, two steps. V(0) = gamma, V(1) = 1.
- `ActionReward`: obs 0, one step; discrete: reward 1 for action 1; continuous: reward
  -(a - 0.5)^2. Best action 1 (discrete), 0.5 (continuous).
- `ObservationActionReward`: obs +-1, one step; discrete: reward 1 if action == (obs > 0);
  continuous: reward -(a - 0.5 obs)^2. The policy must condition on obs.
- `TruncatedConstant`: obs is noise (no clock), reward 1, never terminates, truncated every
  `max_steps_in_episode` steps. The true value is 1 / (1 - gamma) everywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ProbeState(environment.EnvState):
    time: jax.Array
    obs: jax.Array  # [1]


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


class ProbeEnv(environment.Environment[ProbeState, ProbeParams]):
    """One-step episodes with obs `[1]`; subclasses say how obs and reward arise."""

    episode_steps = 1

    def __init__(self, continuous: bool = False):
        super().__init__()
        self.continuous = continuous

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    def first_obs(self, key: jax.Array) -> jax.Array:
        return jnp.zeros((1,), jnp.float32)

    def next_obs(self, key: jax.Array, state: ProbeState) -> jax.Array:
        return self.first_obs(key)

    def reward(self, state: ProbeState, action: jax.Array) -> jax.Array:
        raise NotImplementedError

    def reset_env(self, key: jax.Array, params: ProbeParams) -> tuple[jax.Array, ProbeState]:
        obs = self.first_obs(key)
        return obs, ProbeState(time=jnp.zeros((), jnp.int32), obs=obs)

    def step_env(self, key, state: ProbeState, action, params: ProbeParams):
        reward = jnp.asarray(self.reward(state, action), jnp.float32)
        time = state.time + 1
        obs = self.next_obs(key, state)
        new_state = ProbeState(time=time, obs=obs)
        terminated = jnp.asarray(self.episode_steps > 0, bool) & (time >= self.episode_steps)
        return obs, new_state, reward, terminated, {}

    def is_terminated(self, state: ProbeState, params: ProbeParams) -> jax.Array:
        return state.time >= self.episode_steps

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def num_actions(self) -> int:
        return 1 if self.continuous else 2

    def action_space(self, params: ProbeParams | None = None) -> spaces.Space:
        if self.continuous:
            return spaces.Box(-1.0, 1.0, (1,), jnp.float32)
        return spaces.Discrete(2)

    def observation_space(self, params: ProbeParams) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


def _sign_obs(key: jax.Array) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0).reshape((1,))


class ConstantReward(ProbeEnv):
    def reward(self, state, action):
        return 1.0


class ObservationReward(ProbeEnv):
    def first_obs(self, key):
        return _sign_obs(key)

    def reward(self, state, action):
        return state.obs[0]


class TwoStepDiscount(ProbeEnv):
    episode_steps = 2

    def next_obs(self, key, state):
        return jnp.ones((1,), jnp.float32)

    def reward(self, state, action):
        return jnp.where(state.time == 1, 1.0, 0.0)


class ActionReward(ProbeEnv):
    def reward(self, state, action):
        if self.continuous:
            return -jnp.square(action[0] - 0.5)
        return jnp.where(action == 1, 1.0, 0.0)


class ObservationActionReward(ProbeEnv):
    def first_obs(self, key):
        return _sign_obs(key)

    def reward(self, state, action):
        if self.continuous:
            return -jnp.square(action[0] - 0.5 * state.obs[0])
        return jnp.where(action == (state.obs[0] > 0), 1.0, 0.0)


class TruncatedConstant(ProbeEnv):
    """Reward 1 forever; episodes end only by the time limit (`max_steps_in_episode`)."""

    episode_steps = 0  # never terminates

    def __init__(self, time_limit: int = 8, continuous: bool = False):
        super().__init__(continuous)
        self.time_limit = time_limit

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=self.time_limit)

    def first_obs(self, key):
        return 0.1 * jax.random.normal(key, (1,))

    def reward(self, state, action):
        return 1.0

    def is_terminated(self, state, params):
        return jnp.asarray(False)
