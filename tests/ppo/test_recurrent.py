"""Recurrent PPO (GRU): the same rollout, GAE, loss and update as the feed-forward path, with
the GRU's carry (`rnn_state`) reset at episode starts, minibatches of whole env sequences
replayed from the `rnn_state` stored at their start, and a memory task the feed-forward policy
cannot solve."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from suite_helpers import jit_fast

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.config import ConfigError
from purejaxppo.ppo.evaluate import summarize_eval
from purejaxppo.ppo.networks import act, replay
from purejaxppo.ppo.rollout import collect_rollout
from purejaxppo.ppo.trainer import draw_update_randomness
from purejaxppo.ppo.types import Actors, policy_of
from purejaxppo.ppo.update import (
    make_batch,
    minibatch_gradient,
    shuffle_sequences_into_minibatches,
)
from purejaxppo.runs.evaluation import evaluate_runs
from purejaxppo.runs.population import build_population

# MemoryChain: the context bit is shown on the first of 6 steps and must be recalled at the
# last (+1 right, -1 wrong); a policy without memory scores 0 on average.
CONFIG = PPOConfig(
    env="MemoryChain-bsuite",
    num_envs=16,
    num_steps=32,
    total_timesteps=30_720,
    num_minibatches=4,
    hidden_sizes=(32, 32),
    recurrent=True,
    gru_size=32,
    lr_schedule="constant",
)
HP = Hyperparams(learning_rate=3e-3)


@pytest.fixture(scope="module")
def trainer():
    return make_train(CONFIG)


@pytest.fixture(scope="module")
def rollout(trainer):
    """A second rollout, which starts mid-episode (32 steps = 5 episodes of 6 and 2 steps):
    its start `rnn_state0` matters. Made once for the module: the tests only read it."""
    state = jit_fast(trainer.init)(jax.random.key(0), HP)
    run = jit_fast(collect_rollout, static_argnums=0)
    params = state.params
    noise = draw_update_randomness(trainer, state.key).rollout  # [T, N] = [32, 16]
    actors, _ = run(trainer, params, Actors(state.runner, state.rnn_state), noise)
    assert not np.any(np.asarray(actors.runner.episode_length) == 0)
    rnn_state0 = actors.rnn_state
    noise = draw_update_randomness(trainer, jax.random.key(1)).rollout
    actors, tr = run(trainer, params, actors, noise)
    return state, rnn_state0, actors.rnn_state, tr


def test_network_interface_and_memory_reset(trainer, rollout):
    assert trainer.network.rnn_size == CONFIG.gru_size
    state, *_ = rollout
    obs = jnp.ones((3, 3))
    h = jax.random.normal(jax.random.key(1), (3, 32))
    step = jit_fast(lambda h, first: act(trainer.network, state.params, h, obs, first))
    h_first, _, v_first = step(h, jnp.ones(3, bool))
    h_zero, _, v_zero = step(0 * h, jnp.zeros(3, bool))
    np.testing.assert_allclose(h_first, h_zero)  # first: the old rnn_state is dropped
    np.testing.assert_allclose(v_first, v_zero)
    h_kept, _, _ = step(h, jnp.zeros(3, bool))
    assert not np.allclose(h_kept, h_zero)


def test_replayed_sequences_reproduce_the_rollout(trainer, rollout):
    """Log-probabilities and values replayed from the stored start `rnn_state` (across episode
    resets) equal those of the rollout, so the ratio is 1 on the first epoch."""
    state, rnn_state0, _, tr = rollout
    first = np.asarray(tr.first)
    assert first[1:].sum() >= 16  # episodes of 6 steps restart within the rollout
    zeros = jnp.zeros_like(tr.value)
    batch = make_batch(CONFIG, tr, zeros, zeros, rnn_state0)

    @jit_fast  # one program for the replays and the gradient (eagerly, each op compiles alone)
    def replayed(params, batch, action):
        dist, value = replay(trainer.network, params, batch)
        info, _ = minibatch_gradient(trainer, HP, params, batch)
        _, value_wrong = replay(trainer.network, params, batch._replace(rnn_state=0 * rnn_state0))
        return dist.log_prob(action), value, info, value_wrong

    log_prob, value, info, value_wrong = replayed(state.params, batch, tr.action)
    np.testing.assert_allclose(log_prob, tr.log_prob, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, tr.value, rtol=1e-5, atol=1e-5)
    assert float(info.approx_kl) < 1e-6 and float(info.clip_fraction) == 0.0
    # Without the stored rnn_state the replay differs (the fresh policy head is nearly
    # uniform, so the values show it): the check can fail.
    assert np.abs(np.asarray(value_wrong) - np.asarray(tr.value)).max() > 1e-3


def test_minibatches_hold_whole_env_sequences(rollout):
    _, rnn_state0, _, tr = rollout
    column = jnp.broadcast_to(jnp.arange(16.0), (32, 16))
    batch = make_batch(CONFIG, tr._replace(log_prob=column), column, column, rnn_state0)
    mb = shuffle_sequences_into_minibatches(batch, jax.random.key(3), 4)
    chex.assert_shape(mb.obs, (4, 32, 4, 3))
    chex.assert_shape(mb.rnn_state, (4, 4, 32))
    envs = np.asarray(mb.log_prob)[:, 0, :].astype(int)  # [M, n]: env of each sequence
    assert sorted(envs.ravel()) == list(range(16))
    assert np.all(np.asarray(mb.log_prob) == envs[:, None, :])  # constant along time
    np.testing.assert_array_equal(mb.rnn_state, np.asarray(rnn_state0)[envs])
    np.testing.assert_array_equal(mb.obs, np.asarray(tr.obs)[:, envs].transpose(1, 0, 2, 3))


@pytest.mark.slow
def test_recurrent_policy_learns_what_feed_forward_cannot():
    """Same budget, 4 seeds each: the GRU policy recalls the context; the MLP stays at chance.
    Deterministic evaluation over 64 fresh episodes per seed."""
    population = build_population(HP, seed=0, num_seeds=4)
    means = {}
    for recurrent in (True, False):
        trainer = make_train(CONFIG.replace(recurrent=recurrent))
        out = jax.jit(jax.vmap(trainer))(population.keys, population.hyperparams)
        assert np.isfinite(out.metrics.total_loss).all()
        policy = policy_of(trainer.config, out.state)
        result = evaluate_runs(trainer, policy, jax.random.key(5), 64, deterministic=True)
        means[recurrent] = [s["return_mean"] for s in summarize_eval(result)]
    assert min(means[True]) >= 0.9, means
    assert max(np.abs(means[False])) <= 0.4, means


def test_recurrent_minibatches_must_split_envs():
    with pytest.raises(ConfigError, match="whole env sequences"):
        PPOConfig(num_envs=6, num_steps=8, num_minibatches=4, recurrent=True)
    with pytest.raises(ConfigError, match="gru_size"):
        PPOConfig(recurrent=True, gru_size=0)


def test_rnn_state_survives_a_checkpoint(tmp_path):
    from purejaxppo.outputs.checkpoint import open_manager, restore_checkpoint, save_checkpoint
    from purejaxppo.runs.chunked import abstract_train_state

    config = CONFIG.replace(total_timesteps=16 * 32 * 2)
    trainer = make_train(config)
    population = build_population(HP, seed=0, num_seeds=2)
    out = jit_fast(jax.vmap(trainer))(population.keys, population.hyperparams)
    chex.assert_shape(out.state.rnn_state, (2, 16, 32))
    assert float(jnp.abs(out.state.rnn_state).max()) > 0
    meta = {"updates_done": config.num_updates}
    save_checkpoint(open_manager(tmp_path), out.state, out.metrics, meta)
    restored = restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 2)
    chex.assert_trees_all_equal(restored.state.rnn_state, out.state.rnn_state)
    chex.assert_trees_all_equal(restored.state.params, out.state.params)


def test_recurrent_continuous_policy_replays_and_trains():
    """A recurrent Gaussian policy (Pendulum): the replayed sequences give the rollout's
    log-probabilities and entropy per sample, and a short run trains with finite losses."""
    config = PPOConfig(
        env="Pendulum-v1",
        num_envs=4,
        num_steps=8,
        total_timesteps=4 * 8 * 2,
        recurrent=True,
        update_epochs=2,
        num_minibatches=2,
    )
    trainer = make_train(config)
    state = jit_fast(trainer.init)(jax.random.key(0), HP)

    @jit_fast  # the rollout and its replay in one program
    def rollout_and_replay(state, key):
        noise = draw_update_randomness(trainer, key).rollout  # [8, 4]
        net, params = trainer.network, state.params
        _, tr = collect_rollout(trainer, params, Actors(state.runner, state.rnn_state), noise)
        zeros = jnp.zeros_like(tr.value)
        dist, value = replay(net, params, make_batch(config, tr, zeros, zeros, state.rnn_state))
        return tr, dist.log_prob(tr.action), dist.entropy(), value

    tr, log_prob, entropy, value = rollout_and_replay(state, jax.random.key(1))
    chex.assert_shape([log_prob, entropy, value], (8, 4))
    np.testing.assert_allclose(log_prob, tr.log_prob, rtol=1e-5, atol=1e-5)
    out = jit_fast(trainer)(jax.random.key(0), HP)
    assert np.all(np.isfinite(np.asarray(out.metrics.total_loss)))
