"""XLand-MiniGrid through the adapter: goal -> terminated, max_steps -> truncated.

Needs the `xminigrid` extra (part of `dev`): a missing install fails here, it does not skip.
"""

import jax
import jax.numpy as jnp
import numpy as np
import xminigrid
from suite_helpers import assert_trained, jit_fast, tiny_config, train_once

from purejaxppo import make_env, make_train
from purejaxppo.envs.suites import xminigrid_env

NAME, LIMIT, STEPS = "MiniGrid-Empty-5x5", 8, 10
FORWARD, RIGHT, LEFT = 0, 1, 2
# Env 0 walks to the goal in 5 steps (start (1, 1) facing east, goal (3, 3)), then turns.
# Env 1 turns south and walks into the wall: it never reaches the goal.
ACTIONS = jnp.array(
    [[FORWARD, FORWARD, RIGHT, FORWARD, FORWARD] + [LEFT] * 5, [RIGHT] + [FORWARD] * 9]
).T  # [T, E]


def run(env, key):
    params = env.default_params
    obs0, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 2), params)

    def one(state, inputs):
        keys, action = inputs
        obs, state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(keys, state, action, params)
        return state, (obs, reward, terminated, truncated, info["final_observation"])

    keys = jax.random.split(key, (STEPS, 2))
    _, outs = jax.lax.scan(one, state, (keys, ACTIONS))
    return obs0, *outs, raw_minigrid(key)


def raw_minigrid(key):
    """XLand-MiniGrid alone (no adapter): observations `[T, E, 7, 7, 2]`, step types and
    discounts `[T, E]` for the same actions, without any reset."""
    env, params = xminigrid.make(NAME, max_steps=LIMIT)
    timestep = jax.vmap(env.reset, in_axes=(None, 0))(params, jax.random.split(key, 2))

    def one(timestep, action):
        timestep = jax.vmap(env.step, in_axes=(None, 0, 0))(params, timestep, action)
        return timestep, (timestep.observation, timestep.step_type, timestep.discount)

    return jax.lax.scan(one, timestep, ACTIONS)[1]


def test_minigrid_termination_truncation_final_observation():
    key, env = jax.random.key(0), xminigrid_env(NAME, max_steps=LIMIT)  # built outside jit
    outs = jax.tree.map(np.asarray, jit_fast(lambda key: run(env, key))(key))
    obs0, obs, reward, terminated, truncated, final_obs, (raw_obs, step_type, discount) = outs
    assert np.flatnonzero(terminated[:, 0]).tolist() == [4] and not truncated[:, 0].any()
    np.testing.assert_allclose(reward[4, 0], 1 - 0.9 * 5 / LIMIT)  # the env's own reward
    assert np.flatnonzero(truncated[:, 1]).tolist() == [LIMIT - 1] and not terminated[:, 1].any()
    # XLand-MiniGrid itself ends the same episodes at the same steps, with discount 0 (goal)
    # and 1 (time limit).
    assert step_type[4, 0] == 2 and discount[4, 0] == 0
    assert step_type[LIMIT - 1, 1] == 2 and discount[LIMIT - 1, 1] == 1
    for env_index, end in ((0, 4), (1, LIMIT - 1)):
        np.testing.assert_array_equal(
            final_obs[: end + 1, env_index], raw_obs[: end + 1, env_index]
        )
        np.testing.assert_array_equal(obs[end, env_index], obs0[env_index])  # reset: start again
        assert (final_obs[end, env_index] != obs[end, env_index]).any()
    done = terminated | truncated
    np.testing.assert_array_equal(final_obs[~done], obs[~done])


def test_minigrid_spec_and_tiny_training():
    spec = make_env(f"xminigrid:{NAME}")
    assert spec.name == f"xminigrid:{NAME}" and spec.discrete and spec.action_dim == 6
    assert spec.obs_shape == (7, 7, 2) and spec.params.max_steps_in_episode == 100
    trainer = make_train(tiny_config(f"xminigrid:{NAME}"))
    ((loss, obs),) = train_once([trainer])
    assert_trained(trainer, loss, obs)
