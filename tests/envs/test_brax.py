"""Brax through the adapter: time limit -> truncated, falls -> terminated, final_observation.

Needs the `brax` extra (part of `dev`): a missing install fails here, it does not skip.
"""

import jax
import jax.numpy as jnp
import numpy as np
from suite_helpers import assert_trained, jit_fast, tiny_config, train_once

from purejaxppo import make_env, make_train
from purejaxppo.envs.suites import brax_env

LIMIT, STEPS = 5, 8


def play(env, key, actions):
    """Play envs `[E]` with fixed actions `[T, E, 1]`; everything stacked `[T, E, ...]`."""
    params = env.default_params
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 2), params)

    def one(state, inputs):
        keys, action = inputs
        obs, state, _, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            keys, state, action, params
        )
        return state, (obs, terminated, truncated, info["final_observation"], state.time)

    keys = jax.random.split(key, (STEPS, 2))
    return obs, state, jax.lax.scan(one, state, (keys, actions))[1]


def test_inverted_pendulum_truncation_termination_final_observation():
    """Env 0 pushes gently (action 0.05): its pole would fall at step 9, so the 5-step
    limit truncates it first. Env 1 pushes harder (0.3): its pole falls (|angle| > 0.2,
    brax's own `done`) at step 4, which terminates it; its next episode, reset, falls after
    4 steps again. At each end the next obs is a fresh reset (brax draws q and qd within
    +-0.01) and `final_observation` holds where the episode got to; elsewhere it is the obs."""
    env = brax_env("inverted_pendulum", episode_length=LIMIT)
    actions = jnp.broadcast_to(jnp.array([[0.05], [0.3]]), (STEPS, 2, 1))
    key = jax.random.key(0)
    obs0, _, outs = jit_fast(lambda key: play(env, key, actions))(key)
    obs, terminated, truncated, final_obs, time = (np.asarray(x) for x in outs)
    assert np.flatnonzero(truncated[:, 0]).tolist() == [LIMIT - 1] and not terminated[:, 0].any()
    assert np.flatnonzero(terminated[:, 1]).tolist() == [3, 7] and not truncated[:, 1].any()
    for env_index, end in ((0, LIMIT - 1), (1, 3)):
        assert time[end, env_index] == 0 and time[end - 1, env_index] == end
        assert np.abs(obs[end, env_index]).max() <= 0.01
        assert np.abs(final_obs[end, env_index]).max() > 0.3  # far from any reset state
    assert abs(final_obs[3, 1, 1]) > 0.2 and abs(final_obs[2, 1, 1]) <= 0.2  # the pole angle
    done = terminated | truncated
    np.testing.assert_array_equal(final_obs[~done], obs[~done])
    assert np.asarray(obs0).shape == (2, 4) and obs.dtype == np.float32


def test_brax_spec_and_tiny_training():
    spec = make_env("brax:inverted_pendulum")
    assert spec.name == "brax:inverted_pendulum" and not spec.discrete
    assert spec.obs_shape == (4,) and spec.action_dim == 1
    np.testing.assert_array_equal(spec.action_low, [-1.0])
    np.testing.assert_array_equal(spec.action_high, [1.0])
    assert spec.params.max_steps_in_episode == 1000  # brax's default episode length
    trainer = make_train(tiny_config("brax:inverted_pendulum"))
    ((loss, obs),) = train_once([trainer])
    assert_trained(trainer, loss, obs)
