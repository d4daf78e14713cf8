"""Rollout shapes and auto-reset; determinism; vmap over seeds and learning rates."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from suite_helpers import FAITHFUL_CPU_COMPILE, jit_fast

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.config import stack_hyperparams
from purejaxppo.envs.setup import reset_envs
from purejaxppo.ppo.networks import act, initial_rnn_state
from purejaxppo.ppo.normalize import RunningStats
from purejaxppo.ppo.rollout import collect_rollout
from purejaxppo.ppo.trainer import draw_update_randomness
from purejaxppo.ppo.types import Actors

# 5 updates: `test_stages_in_pieces_equal_one_call` runs them as 2, 1 and 2, so its two pieces
# of 2 updates are one compiled program.
SMALL = PPOConfig(env="CartPole-v1", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 5)


@pytest.fixture(scope="module")
def trainer():
    return make_train(SMALL)


@pytest.fixture(scope="module")
def train(trainer):
    """One run of SMALL, compiled once for the module."""
    return jit_fast(trainer)


def test_rollout_shapes_and_auto_reset():
    steps, envs = 200, 3
    trainer = make_train(SMALL.replace(num_steps=steps, num_envs=envs))
    runner = reset_envs(trainer.env, jax.random.key(0), envs)
    params = jit_fast(trainer.init)(jax.random.key(1), Hyperparams()).params
    rollout = jit_fast(collect_rollout, static_argnums=0)
    actors = Actors(runner, initial_rnn_state(trainer.network, envs))
    noise = draw_update_randomness(trainer, jax.random.key(2)).rollout
    actors, tr = rollout(trainer, params, actors, noise)
    runner = actors.runner
    chex.assert_shape([tr.obs], (steps, envs, 4))
    chex.assert_shape(
        [tr.action, tr.log_prob, tr.value, tr.next_value, tr.reward, tr.terminated, tr.truncated],
        (steps, envs),
    )
    chex.assert_shape(runner.obs, (envs, 4))
    ended = np.asarray(tr.terminated | tr.truncated)
    assert ended.sum() > 3, "a random CartPole policy ends episodes within 200 steps"
    obs = np.asarray(tr.obs)
    t, n = np.argwhere(ended[:-1])[0]
    # After an episode end the next observation is a fresh reset: every coordinate small...
    assert np.all(np.abs(obs[t + 1, n]) <= 0.05)
    # ...and the episode's length counter restarts.
    lengths = np.asarray(tr.episode_length)
    assert lengths[t + 1, n] == 1 if not ended[t + 1, n] else True
    # The bootstrap value uses the pre-reset observation, not the reset one.
    final_obs_value = act(trainer.network, params, None, obs[t + 1, n][None], None).value
    assert not np.allclose(tr.next_value[t, n], final_obs_value[0])
    # Without an episode end, next_value[t] is the value of obs[t + 1].
    t2, n2 = np.argwhere(~ended[:-1])[0]
    np.testing.assert_allclose(tr.next_value[t2, n2], tr.value[t2 + 1, n2], rtol=1e-5)


def test_same_key_bit_identical(train):
    a = train(jax.random.key(3), Hyperparams())
    b = train(jax.random.key(3), Hyperparams())
    chex.assert_trees_all_equal(a, b)
    c = train(jax.random.key(4), Hyperparams())
    assert not np.array_equal(a.metrics.total_loss, c.metrics.total_loss)


def test_vmap_over_seeds_equals_separate_runs(trainer, train):
    keys = jax.random.split(jax.random.key(5), 3)
    batched = jit_fast(jax.vmap(trainer, in_axes=(0, None)))(keys, Hyperparams())
    for i in range(3):
        alone = train(keys[i], Hyperparams())
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], batched.state.params),
            alone.state.params,
            rtol=1e-4,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            batched.metrics.episode_return[i], alone.metrics.episode_return, rtol=1e-4
        )


def test_vmap_over_learning_rates_equals_separate_runs_and_compiles_once(trainer, train):
    key = jax.random.key(6)
    rates = [1e-4, 1e-3, 3e-3]
    hp = stack_hyperparams([Hyperparams(learning_rate=r) for r in rates])
    sweep = jit_fast(jax.vmap(trainer, in_axes=(None, 0)))
    batched = sweep(key, hp)
    sweep(key, hp.replace(learning_rate=hp.learning_rate * 2))  # new values, same shapes
    assert sweep._cache_size() == 1
    finals = []
    for i, rate in enumerate(rates):
        alone = train(key, Hyperparams(learning_rate=rate))
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], batched.state.params),
            alone.state.params,
            rtol=1e-4,
            atol=1e-5,
        )
        np.testing.assert_allclose(batched.metrics.learning_rate[i], alone.metrics.learning_rate)
        finals.append(alone.state.params)
    # The learning rate really changed the outcome.
    a, b = (jax.tree.leaves(p)[0] for p in finals[:2])
    assert not np.allclose(a, b)


def test_stages_in_pieces_equal_one_call(trainer):
    hp = Hyperparams()
    key = jax.random.key(7)
    # Faithful compiles: the fast one's kernels round the pieces and the whole further apart.
    whole = jit_fast(trainer, FAITHFUL_CPU_COMPILE)(key, hp)
    state = jit_fast(trainer.init, FAITHFUL_CPU_COMPILE)(key, hp)
    run_updates = jit_fast(trainer.run_updates, FAITHFUL_CPU_COMPILE, static_argnums=2)
    state, first = run_updates(hp, state, 2)
    state, one = jit_fast(trainer.update_step, FAITHFUL_CPU_COMPILE)(hp, state)
    state, rest = run_updates(hp, state, SMALL.num_updates - 3)
    chex.assert_trees_all_close(state.params, whole.state.params, rtol=1e-6, atol=1e-7)
    joined = jax.tree.map(
        lambda a, b, c: np.concatenate([a, np.asarray(b)[None], c]), first, one, rest
    )
    chex.assert_trees_all_close(joined, whole.metrics, rtol=1e-6, atol=1e-7)
    assert int(state.update) == SMALL.num_updates


@pytest.mark.parametrize(
    "env, recurrent, normalized",
    [
        ("CartPole-v1", False, False),
        ("CartPole-v1", True, False),
        ("CartPole-v1", False, True),
        ("Pendulum-v1", False, True),  # continuous actions
        ("Pendulum-v1", True, False),
    ],
)
def test_values_after_the_scan_equal_values_in_it(env, recurrent, normalized):
    """The rollout gives the same transition whether its values come from the acting pass or
    from one pass after the scan (`Tuning.values_after_scan`): feed-forward and recurrent
    networks, discrete and continuous actions, raw and normalised observations."""
    steps, envs = 64, 4
    config = SMALL.replace(
        env=env, recurrent=recurrent, num_minibatches=2, num_steps=steps, num_envs=envs
    )
    trainer = make_train(config)
    runner = reset_envs(trainer.env, jax.random.key(0), envs)
    params = jit_fast(trainer.init)(jax.random.key(1), Hyperparams()).params
    actors = Actors(runner, initial_rnn_state(trainer.network, envs))
    shape = trainer.env.obs_shape
    stats = RunningStats(jnp.full(shape, 0.3), jnp.full(shape, 2.0), jnp.float32(10.0))
    obs_stats = stats if normalized else None
    noise = draw_update_randomness(trainer, jax.random.key(2)).rollout

    def rollout(values_after_scan: bool):
        tuning = dataclasses.replace(trainer.tuning, values_after_scan=values_after_scan)
        tuned = make_train(config, tuning=tuning)
        assert tuned.tuning.values_after_scan is values_after_scan
        # Faithful: the fast compile's kernels round the two rollouts further apart.
        run = jit_fast(collect_rollout, FAITHFUL_CPU_COMPILE, static_argnums=0)
        return run(tuned, params, actors, noise, obs_stats)[1]

    in_scan, after = rollout(False), rollout(True)
    assert float(np.std(np.asarray(in_scan.value))) > 0  # values that could differ
    chex.assert_trees_all_close(in_scan, after, rtol=1e-5, atol=1e-6)
