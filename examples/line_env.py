"""A plain functional environment wrapped for purejaxppo (the README's example).

A point on a line has to reach the origin. The state is its position x; actions 0, 1, 2
move it by -0.1, 0, +0.1; the reward is -|x|; coming within 0.05 of the origin ends the
episode. `FunctionalEnv` adds the time limit (as truncation), the auto-reset and
`info["final_observation"]`.
"""

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from purejaxppo.envs.functional import FunctionalEnv


def reset(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Observation `[1]` and state `[]`: the start position, uniform in [-1, 1]."""
    x = jax.random.uniform(key, (), minval=-1.0, maxval=1.0)
    return x[None], x


def step(key: jax.Array, x: jax.Array, action: jax.Array):
    """Observation `[1]`, state, reward and terminated (all `[]`)."""
    x = jnp.clip(x + 0.1 * (action - 1), -1.0, 1.0)
    return x[None], x, -jnp.abs(x), jnp.abs(x) < 0.05


def make_line_env(max_steps: int = 100) -> FunctionalEnv:
    return FunctionalEnv(
        name="Line",
        reset=reset,
        step=step,
        observation_space=spaces.Box(-1.0, 1.0, (1,), jnp.float32),
        action_space=spaces.Discrete(3),
        max_steps_in_episode=max_steps,
    )
