"""GAE against an independent plain-Python loop, with termination and truncation."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo.ppo.gae import compute_gae


def reference_gae(reward, value, next_value, terminated, truncated, gamma, lam):
    """Textbook recursion, one env at a time, written without the library's structure."""
    steps, envs = reward.shape
    advantage = np.zeros((steps, envs))
    for n in range(envs):
        running = 0.0
        for t in reversed(range(steps)):
            bootstrap = 0.0 if terminated[t, n] else gamma * next_value[t, n]
            delta = reward[t, n] + bootstrap - value[t, n]
            episode_goes_on = not (terminated[t, n] or truncated[t, n])
            running = delta + (gamma * lam * running if episode_goes_on else 0.0)
            advantage[t, n] = running
    return advantage, advantage + value


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_python_loop(seed):
    rng = np.random.default_rng(seed)
    steps, envs, gamma, lam = 37, 6, 0.97, 0.9
    reward = rng.normal(size=(steps, envs)).astype(np.float32)
    value = rng.normal(size=(steps, envs)).astype(np.float32)
    next_value = rng.normal(size=(steps, envs)).astype(np.float32)
    terminated = rng.random((steps, envs)) < 0.1
    truncated = rng.random((steps, envs)) < 0.1
    terminated[5, 0] = truncated[5, 0] = True  # both at once
    truncated[-1, 1], terminated[-1, 1] = True, False  # truncation on the last step
    terminated[-1, 2], truncated[-1, 2] = True, False  # termination on the last step
    assert (terminated & truncated).any()

    advantage, target = compute_gae(
        jnp.asarray(reward),
        jnp.asarray(value),
        jnp.asarray(next_value),
        jnp.asarray(terminated),
        jnp.asarray(truncated),
        gamma,
        lam,
    )
    chex.assert_shape([advantage, target], (steps, envs))
    want_adv, want_target = reference_gae(
        reward, value, next_value, terminated, truncated, gamma, lam
    )
    np.testing.assert_allclose(advantage, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, want_target, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_but_termination_does_not():
    # One step each: reward 1, next value 10, value 0.
    ones = jnp.ones((1, 2))
    terminated = jnp.array([[True, False]])
    truncated = jnp.array([[False, True]])
    advantage, _ = compute_gae(ones, 0 * ones, 10 * ones, terminated, truncated, 0.5, 0.9)
    np.testing.assert_allclose(advantage, [[1.0, 1.0 + 0.5 * 10]])


def test_recursion_stops_at_episode_end():
    # Step 0 truncates: its advantage must not include step 1's delta.
    reward = jnp.array([[0.0], [5.0]])
    zeros = jnp.zeros((2, 1))
    truncated = jnp.array([[True], [False]])
    terminated = jnp.zeros((2, 1), bool)
    advantage, _ = compute_gae(reward, zeros, zeros, terminated, truncated, 0.9, 1.0)
    np.testing.assert_allclose(advantage, [[0.0], [5.0]])
