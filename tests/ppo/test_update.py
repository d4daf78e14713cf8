"""The learning-rate schedule, the metrics reductions, and Gaussian actions clipped for the env
while their log-probability stays that of the unclipped sample."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from suite_helpers import jit_fast

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.config import stack_hyperparams
from purejaxppo.envs.setup import reset_envs
from purejaxppo.metrics import final_returns
from purejaxppo.ppo.gae import compute_gae
from purejaxppo.ppo.networks import act, initial_rnn_state
from purejaxppo.ppo.rollout import collect_rollout
from purejaxppo.ppo.schedules import learning_rate_at
from purejaxppo.ppo.trainer import draw_update_randomness, summarize_update
from purejaxppo.ppo.types import (
    Actors,
    LearnerState,
    LossInfo,
    Schedules,
    Transition,
    UpdateInfo,
)
from purejaxppo.ppo.update import (
    global_norm,
    gradient_slices,
    make_batch,
    make_optimizer,
    update_policy,
)

CONFIG = PPOConfig(
    num_envs=4, num_steps=8, total_timesteps=4 * 8 * 5, update_epochs=2, num_minibatches=2
)


def test_schedules_follow_their_formula_per_update():
    hp = Hyperparams(learning_rate=0.01, ent_coef=0.05, ent_coef_end=0.01)
    p = np.arange(CONFIG.num_updates) / CONFIG.num_updates
    factors = {
        "constant": np.ones_like(p),
        "linear": 1 - p,
        "cosine": 0.5 * (1 + np.cos(np.pi * p)),
    }
    params = {}
    for kind, factor in factors.items():
        config = CONFIG.replace(lr_schedule=kind, ent_schedule=kind)
        out = jit_fast(make_train(config))(jax.random.key(0), hp)
        np.testing.assert_allclose(out.metrics.learning_rate, 0.01 * factor, rtol=1e-5)
        np.testing.assert_allclose(out.metrics.ent_coef, 0.01 + 0.04 * factor, rtol=1e-5)
        assert learning_rate_at(config, hp, config.num_updates + 3) >= 0.0
        params[kind] = optax.tree.norm(out.state.params)
    assert len(set(np.asarray(list(params.values())).tolist())) == 3  # each trains differently


def test_optimizer_steps_by_the_learning_rate_of_the_update():
    """Adam on a constant gradient moves each parameter by the learning rate it is given."""
    hp = Hyperparams()
    params = jnp.zeros(())
    state = make_optimizer(hp, 0.1).init(params)
    for lr in (0.1, 0.05, 0.0):
        updates, state = make_optimizer(hp, lr).update(jnp.ones(()), state, params)
        np.testing.assert_allclose(-float(updates), lr, rtol=1e-3, atol=1e-7)


def _transition(returns, ended):
    """A transition of zeros but its episode ends `ended` `[T, N]` (returns `returns`,
    length 7)."""
    ended = jnp.asarray(ended)
    zeros = Transition(*([jnp.zeros(ended.shape)] * len(Transition._fields)))
    return zeros._replace(
        obs=zeros.obs[..., None],
        first=jnp.zeros_like(ended),
        terminated=ended,
        truncated=jnp.zeros_like(ended),
        episode_return=jnp.asarray(returns, jnp.float32),
        episode_length=jnp.full(ended.shape, 7),
    )


def test_summary_counts_only_ended_episodes():
    info = UpdateInfo(LossInfo(*([jnp.zeros(())] * 6)), jnp.zeros(()), jnp.asarray(1))
    schedules = Schedules(learning_rate=jnp.ones(()), ent_coef=jnp.zeros(()))
    ended = [[False, True], [True, False]]
    m = summarize_update(
        _transition([[99.0, 10.0], [20.0, 99.0]], ended), jnp.zeros((2, 2)), info, schedules
    )
    assert int(m.episodes) == 2 and float(m.episode_return) == pytest.approx(15.0)
    assert float(m.episode_length) == 7
    none = summarize_update(
        _transition([[5.0, 5.0]], [[False, False]]), jnp.zeros((1, 2)), info, schedules
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
    runner = reset_envs(trainer.env, jax.random.key(0), 8)
    params = jit_fast(trainer.init)(jax.random.key(1), Hyperparams()).params
    params["params"]["log_std"] = jnp.full_like(params["params"]["log_std"], 2.0)  # std 7.4
    actors = Actors(runner, initial_rnn_state(trainer.network, 8))
    noise = draw_update_randomness(trainer, jax.random.key(2)).rollout  # [16, 8]
    actors, tr = jit_fast(collect_rollout, static_argnums=0)(trainer, params, actors, noise)
    runner = actors.runner
    actions = np.asarray(tr.action)
    assert np.abs(actions).max() > 2.0  # the stored action is the unclipped sample
    dist = act(trainer.network, params, None, tr.obs, None).dist
    np.testing.assert_allclose(tr.log_prob, dist.log_prob(tr.action), rtol=1e-5)
    # The env saw the clipped action: Pendulum keeps the torque it applied in `last_u`
    # (no episode ends within 16 of its 200 steps).
    np.testing.assert_allclose(
        runner.env_state.last_u, np.clip(actions[-1, :, 0], -2.0, 2.0), rtol=1e-6
    )


@pytest.mark.parametrize("grad_scale", [0.01, 100.0])  # clipping off / on
def test_flat_optimizer_equals_clip_and_adam_per_array(grad_scale):
    """`make_optimizer` runs on the concatenated parameters (`optax.flatten`): the same steps
    as clipping and Adam applied array by array, and `global_norm` is optax's tree norm."""
    hp = Hyperparams(max_grad_norm=0.5)
    keys = jax.random.split(jax.random.key(1), 4)
    params = {"w": jax.random.normal(keys[0], (3, 5)), "b": jnp.zeros(5), "s": jnp.ones(())}
    per_array = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2, eps=1e-5))
    flat_opt = make_optimizer(hp, 1e-2)
    flat_state, tree_state = flat_opt.init(params), per_array.init(params)
    assert jax.tree.leaves(flat_state)[1].shape == (3 * 5 + 5 + 1,)  # mu: one flat vector
    flat_params = tree_params = params
    for key in keys[1:]:
        grads = jax.tree.map(lambda x, k=key: grad_scale * jax.random.normal(k, x.shape), params)
        np.testing.assert_allclose(global_norm(grads), optax.tree.norm(grads), rtol=1e-6)
        updates, flat_state = flat_opt.update(grads, flat_state, flat_params)
        flat_params = optax.apply_updates(flat_params, updates)
        updates, tree_state = per_array.update(grads, tree_state, tree_params)
        tree_params = optax.apply_updates(tree_params, updates)
    chex.assert_trees_all_close(flat_params, tree_params, rtol=1e-6, atol=1e-7)
    assert not np.allclose(flat_params["w"], params["w"])


def test_target_kl_stops_remaining_epochs_per_run_under_vmap():
    """Two runs in one vmap: a tiny target KL keeps only the first epoch of every update
    (its optimizer took num_minibatches steps per update), a huge one keeps all epochs and
    equals a run without the stop."""
    config = CONFIG.replace(update_epochs=4, target_kl_stop=True)
    hp = stack_hyperparams([Hyperparams(target_kl=1e-9), Hyperparams(target_kl=1e3)])
    keys = jnp.stack([jax.random.key(0)] * 2)
    out = jit_fast(jax.vmap(make_train(config)))(keys, hp)
    np.testing.assert_array_equal(out.metrics.epochs[0], 1)
    np.testing.assert_array_equal(out.metrics.epochs[1], 4)
    counts = [leaf for leaf in jax.tree.leaves(out.state.opt_state) if leaf.dtype == jnp.int32]
    assert counts, "Adam keeps a step count"
    steps = config.num_updates * config.num_minibatches
    np.testing.assert_array_equal(counts[0], [steps, 4 * steps])
    plain = jit_fast(make_train(CONFIG.replace(update_epochs=4)))(keys[0], Hyperparams())
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[1], out.state.params), plain.state.params, rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(
        jax.tree.leaves(out.state.params)[0][0], jax.tree.leaves(plain.state.params)[0]
    )


def test_sliced_gradient_passes_equal_one_pass_per_minibatch():
    """The CPU's cache-sized gradient slices must not change the update: one update from the
    same rollout with 4 slices per minibatch (`Tuning.gradient_slice`) equals one pass
    (params, diagnostics, grad norm)."""
    config = PPOConfig(
        num_envs=16, num_steps=32, total_timesteps=16 * 32 * 2, update_epochs=2, num_minibatches=2
    )
    assert gradient_slices(config, 64) == 4 and gradient_slices(config, None) == 1
    assert gradient_slices(config, 100) == 4  # the fewest slices of <= 100 that divide 256
    assert gradient_slices(config.replace(recurrent=True), 64) == 1
    prime = PPOConfig(num_envs=1, num_steps=127, total_timesteps=127, num_minibatches=1)
    assert gradient_slices(prime, 16) == 1  # 127 is prime: no slices of 8 to 16 samples
    trainer = make_train(config)
    hp = Hyperparams()
    state = jit_fast(trainer.init)(jax.random.key(0), hp)

    @jit_fast
    def rollout_batch(state):
        noise = draw_update_randomness(trainer, jax.random.key(1)).rollout
        _, tr = collect_rollout(trainer, state.params, Actors(state.runner, None), noise)
        advantage, target = compute_gae(
            tr.reward, tr.value, tr.next_value, tr.terminated, tr.truncated, hp.gamma, hp.gae_lambda
        )
        return make_batch(config, tr, advantage, target, None)

    batch = rollout_batch(state)
    chex.assert_shape(batch.advantage, (512,))

    def update(gradient_slice):
        sliced = make_train(
            config, tuning=dataclasses.replace(trainer.tuning, gradient_slice=gradient_slice)
        )
        return update_policy(
            sliced,
            hp,
            LearnerState(state.params, state.opt_state),
            batch,
            jax.random.split(jax.random.key(2), config.update_epochs),
            Schedules(jnp.float32(hp.learning_rate), jnp.float32(hp.ent_coef)),
        )

    one_pass, sliced = jit_fast(lambda: update(None))(), jit_fast(lambda: update(64))()
    for a, b in zip(jax.tree.leaves(one_pass), jax.tree.leaves(sliced), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: jnp.abs(a - b).max(), one_pass[0].params, state.params)
    )
    assert max(float(m) for m in moved) > 1e-4  # the update did something to compare
