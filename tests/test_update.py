"""The learning-rate schedule, the metrics reductions, and Gaussian actions clipped for the env
while their log-probability stays that of the unclipped sample."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.envs import reset_envs
from purejaxppo.loss import LossInfo
from purejaxppo.population import final_returns
from purejaxppo.rollout import Transition, collect_rollout
from purejaxppo.train import summarize_update
from purejaxppo.update import make_optimizer

CONFIG = PPOConfig(
    num_envs=4, num_steps=8, total_timesteps=4 * 8 * 5, update_epochs=2, num_minibatches=2
)


def test_annealed_learning_rate_per_optimizer_step():
    hp = Hyperparams(learning_rate=0.1)
    optimizer = make_optimizer(CONFIG, hp)
    params = jnp.zeros(())
    state = optimizer.init(params)
    steps_per_update = CONFIG.update_epochs * CONFIG.num_minibatches  # 4
    sizes = []
    for _ in range(CONFIG.num_updates * steps_per_update + steps_per_update):
        updates, state = optimizer.update(jnp.ones(()), state, params)
        sizes.append(-float(updates))  # Adam on a constant gradient steps by the learning rate
    sizes = np.array(sizes)
    expected = [
        0.1 * max(0.0, 1 - (c // steps_per_update) / CONFIG.num_updates) for c in range(len(sizes))
    ]
    np.testing.assert_allclose(sizes, expected, rtol=1e-3, atol=1e-7)
    assert sizes[steps_per_update - 1] > sizes[steps_per_update]  # steps within an update share


def test_learning_rate_metric_matches_schedule():
    out = jax.jit(make_train(CONFIG))(jax.random.key(0), Hyperparams(learning_rate=0.01))
    lr = np.asarray(out.metrics.learning_rate)
    np.testing.assert_allclose(lr, 0.01 * (1 - np.arange(CONFIG.num_updates) / 5), rtol=1e-6)
    constant = jax.jit(make_train(CONFIG.replace(anneal_lr=False)))(
        jax.random.key(0), Hyperparams(learning_rate=0.01)
    )
    np.testing.assert_allclose(constant.metrics.learning_rate, 0.01)
    assert optax.tree.norm(out.state.params) != optax.tree.norm(constant.state.params)


def _transition(returns, ended):
    ended = jnp.asarray(ended)
    zeros = jnp.zeros(ended.shape)
    return Transition(
        obs=zeros[..., None],
        action=zeros,
        log_prob=zeros,
        value=zeros,
        next_value=zeros,
        reward=zeros,
        terminated=ended,
        truncated=jnp.zeros_like(ended),
        episode_return=jnp.asarray(returns, jnp.float32),
        episode_length=jnp.full(ended.shape, 7),
    )


def test_summary_counts_only_ended_episodes():
    info = LossInfo(*([jnp.zeros(())] * 6))
    ended = [[False, True], [True, False]]
    m = summarize_update(
        _transition([[99.0, 10.0], [20.0, 99.0]], ended),
        jnp.zeros((2, 2)),
        info,
        jnp.zeros(()),
        jnp.ones(()),
    )
    assert int(m.episodes) == 2 and float(m.episode_return) == pytest.approx(15.0)
    assert float(m.episode_length) == 7
    none = summarize_update(
        _transition([[5.0, 5.0]], [[False, False]]),
        jnp.zeros((1, 2)),
        info,
        jnp.zeros(()),
        jnp.ones(()),
    )
    assert int(none.episodes) == 0 and np.isnan(none.episode_return)


def test_final_return_weights_by_episode_count_over_last_tenth():
    class M:
        pass

    m = M()
    m.episode_return = np.array([[0.0] * 18 + [10.0, 40.0], [np.nan] * 20])
    m.episodes = np.array([[1] * 18 + [3, 1], [0] * 20])
    finals = final_returns(m)
    assert finals[0] == pytest.approx((3 * 10 + 40) / 4)  # last 2 of 20 updates, weighted
    assert np.isnan(finals[1])


def test_gaussian_actions_clipped_for_env_log_prob_unclipped():
    trainer = make_train(
        PPOConfig(env="Pendulum-v1", num_envs=8, num_steps=16, total_timesteps=128)
    )
    runner = reset_envs(trainer.spec, jax.random.key(0), 8)
    params = trainer.network.init(jax.random.key(1), runner.obs)
    params["params"]["log_std"] = jnp.full_like(params["params"]["log_std"], 2.0)  # std 7.4
    runner, tr = collect_rollout(
        trainer.network, trainer.spec, params, runner, jax.random.key(2), 16
    )
    actions = np.asarray(tr.action)
    assert np.abs(actions).max() > 2.0  # the stored action is the unclipped sample
    dist = trainer.network.apply(params, tr.obs, method="policy")
    np.testing.assert_allclose(tr.log_prob, dist.log_prob(tr.action), rtol=1e-5)
    # The env saw the clipped action: Pendulum keeps the torque it applied in `last_u`
    # (no episode ends within 16 of its 200 steps).
    np.testing.assert_allclose(
        runner.env_state.last_u, np.clip(actions[-1, :, 0], -2.0, 2.0), rtol=1e-6
    )
