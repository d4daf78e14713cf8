"""Evaluation: known returns on probe envs, first episode only, a trained CartPole, runs axis."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import probe_config
from flax import struct
from suite_helpers import jit_fast

from purejaxppo import ConfigError, Hyperparams, make_train
from purejaxppo.envs import probes
from purejaxppo.envs.setup import reset_envs
from purejaxppo.ppo.evaluate import (
    EvalResult,
    FreshEpisodes,
    evaluate_policy,
    play_first_episodes,
    resolve_max_steps,
    summarize_eval,
)
from purejaxppo.presets import PRESETS
from purejaxppo.runs import evaluation
from purejaxppo.runs.evaluation import evaluate_runs

PROBE = probe_config(num_steps=4, num_updates=1)  # only its network shape matters here


@functools.partial(jit_fast, static_argnums=(0, 3, 4, 5))
def evaluate_jit(trainer, params, key, num_episodes, deterministic, max_steps=None):
    return evaluate_policy(trainer, params, key, num_episodes, deterministic, max_steps)


def random_params(trainer, seed, scale=0.5):
    """Network params of the right structure filled with N(0, scale^2) by numpy (no jax init,
    whose orthogonal initialiser costs seconds to compile on this CPU)."""
    shapes = jax.eval_shape(lambda k: trainer.init(k, Hyperparams()).params, jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(scale * rng.normal(size=x.shape), x.dtype), shapes)


def constant_policy(trainer, actor_bias, log_std=None):
    """Params whose actor ignores the observation: last layer kernel 0, bias `actor_bias`."""
    params = random_params(trainer, 0)["params"]
    actor = dict(params["actor"])
    last = max(actor, key=lambda name: int(name.split("_")[-1]))
    actor[last] = {
        "kernel": jnp.zeros_like(actor[last]["kernel"]),
        "bias": jnp.asarray(actor_bias, jnp.float32),
    }
    params = {**params, "actor": actor}
    if log_std is not None:
        params["log_std"] = jnp.asarray(log_std, jnp.float32)
    return {"params": params}


@pytest.mark.parametrize("deterministic", [True, False], ids=["mode", "sample"])
def test_fixed_length_constant_reward_gives_exactly_its_length(deterministic):
    # Reward 1 a step, truncated after 8 steps: return 8 for any policy.
    trainer = make_train(PROBE, env=probes.TruncatedConstant(time_limit=8))
    params = random_params(trainer, 0)
    result = evaluate_jit(trainer, params, jax.random.key(1), 32, deterministic)
    assert result.returns.shape == result.lengths.shape == result.finished.shape == (32,)
    np.testing.assert_array_equal(result.returns, 8.0)
    np.testing.assert_array_equal(result.lengths, 8)
    assert np.all(result.finished)


def test_max_steps_cuts_episodes_and_reports_them_unfinished():
    trainer = make_train(PROBE, env=probes.TruncatedConstant(time_limit=8))
    params = random_params(trainer, 0)
    result = evaluate_jit(trainer, params, jax.random.key(1), 4, True, 5)
    np.testing.assert_array_equal(result.returns, 5.0)  # the partial episode so far
    np.testing.assert_array_equal(result.lengths, 5)
    assert not np.any(result.finished)
    (summary,) = summarize_eval(result)
    assert summary["episodes_finished"] == 0 and summary["episodes"] == 4
    assert np.isnan(summary["return_mean"])


@struct.dataclass
class NoTimeLimit:
    pass


def test_env_without_time_limit_requires_max_steps():
    trainer = make_train(PROBE, env=probes.ConstantReward(), env_params=NoTimeLimit())
    params = random_params(trainer, 0)
    with pytest.raises(ConfigError, match="max_steps"):
        resolve_max_steps(trainer.env, None)
    with pytest.raises(ConfigError, match="max_steps"):
        evaluate_policy(trainer, params, jax.random.key(0), 2, True)
    assert resolve_max_steps(trainer.env, 7) == 7
    with pytest.raises(ConfigError, match="num_episodes"):
        evaluate_policy(trainer, params, jax.random.key(0), 0, True, 7)


def test_deterministic_takes_the_best_action_sampling_does_not():
    # One step; reward 1 for action 1. Logits [0, 1]: mode is 1, P(1) = sigmoid(1) = 0.731.
    trainer = make_train(PROBE, env=probes.ActionReward())
    params = constant_policy(trainer, [0.0, 1.0])
    best = evaluate_jit(trainer, params, jax.random.key(2), 512, True)
    np.testing.assert_array_equal(best.returns, 1.0)
    np.testing.assert_array_equal(best.lengths, 1)
    sampled = evaluate_jit(trainer, params, jax.random.key(2), 512, False)
    assert 0.65 < float(np.mean(sampled.returns)) < 0.81, np.mean(sampled.returns)
    assert set(np.unique(sampled.returns)) == {0.0, 1.0}
    # The mode follows the logits: preferring action 0 gives return 0 everywhere.
    worst = evaluate_jit(
        trainer, constant_policy(trainer, [1.0, 0.0]), jax.random.key(2), 512, True
    )
    np.testing.assert_array_equal(worst.returns, 0.0)


def test_continuous_actions_are_clipped_to_the_bounds_as_in_training():
    # One step; reward -(a - 0.5)^2 with a in [-1, 1].
    trainer = make_train(PROBE, env=probes.ActionReward(continuous=True))
    at_best = evaluate_jit(trainer, constant_policy(trainer, [0.5]), jax.random.key(3), 256, True)
    np.testing.assert_allclose(at_best.returns, 0.0, atol=1e-7)
    # Mean 3 is clipped to 1: -(1 - 0.5)^2 = -0.25 (unclipped it would be -6.25).
    beyond = evaluate_jit(trainer, constant_policy(trainer, [3.0]), jax.random.key(3), 256, True)
    np.testing.assert_allclose(beyond.returns, -0.25, rtol=1e-6)
    # Samples with std 1 around 0.5: variable, never below -(-1 - 0.5)^2 = -2.25 once clipped
    # (unclipped, about 13% of 256 samples would score below -2.25).
    params = constant_policy(trainer, [0.5], log_std=[0.0])
    sampled = evaluate_jit(trainer, params, jax.random.key(3), 256, False)
    assert np.min(sampled.returns) >= -2.25 - 1e-6
    assert np.mean(sampled.returns) < -0.1
    assert np.unique(sampled.returns).size > 100


class RandomLength(probes.ProbeEnv):
    """Episodes of 1 to 8 steps, the length drawn at reset and shown as the obs; reward 1."""

    def first_obs(self, key):
        return jax.random.randint(key, (1,), 1, 9).astype(jnp.float32)

    def next_obs(self, key, state):
        return state.obs

    def reward(self, state, action):
        return 1.0

    def step_env(self, key, state, action, params):
        obs, new_state, reward, _, info = super().step_env(key, state, action, params)
        return obs, new_state, reward, new_state.time >= state.obs[0].astype(jnp.int32), info


def test_only_each_envs_first_episode_counts():
    # Short episodes end, auto-reset and go on while the longest is still running; the later
    # episodes (other lengths, other returns) must not change what was recorded.
    trainer = make_train(PROBE, env=RandomLength())
    runner = reset_envs(trainer.env, jax.random.key(4), 32)
    first_length = np.asarray(runner.obs[:, 0]).astype(np.int32)
    assert first_length.min() < first_length.max()  # so some envs play several episodes
    episodes = FreshEpisodes(runner, jax.random.key(5), 1000)
    play = jax.jit(lambda params: play_first_episodes(trainer, params, episodes, False))
    result = play(random_params(trainer, 0))
    np.testing.assert_array_equal(result.lengths, first_length)
    np.testing.assert_array_equal(result.returns, first_length.astype(np.float32))
    assert np.all(result.finished)


@pytest.fixture(scope="module")
def cartpole():
    config, hp = PRESETS["cartpole"]
    trainer = make_train(config)
    output = jax.jit(trainer)(jax.random.key(0), hp)
    return trainer, output.state.params


def test_trained_cartpole_scores_near_500_deterministically(cartpole):
    trainer, params = cartpole
    params_r = jax.tree.map(lambda x: x[None], params)
    result = evaluate_runs(trainer, params_r, jax.random.key(6), 16, deterministic=True)
    assert isinstance(result.returns, np.ndarray) and result.returns.shape == (1, 16)
    (summary,) = summarize_eval(result)
    print("trained CartPole, deterministic:", summary)
    assert summary["return_mean"] >= 475, summary
    assert summary["episodes_finished"] == 16
    np.testing.assert_array_equal(result.returns, result.lengths)  # reward 1 a step


def test_evaluate_runs_equals_evaluate_policy_per_run(monkeypatch):
    trainer = make_train(PRESETS["cartpole"][0])
    runs = [random_params(trainer, seed) for seed in (7, 8)]
    params_r = jax.tree.map(lambda *x: jnp.stack(x), *runs)
    key = jax.random.key(8)
    batched = evaluate_runs(trainer, params_r, key, 8, deterministic=False)
    assert batched.returns.shape == batched.lengths.shape == batched.finished.shape == (2, 8)
    for run, run_key in enumerate(jax.random.split(key, 2)):
        params = jax.tree.map(lambda x, run=run: x[run], params_r)
        single = evaluate_jit(trainer, params, run_key, 8, False)
        for name in EvalResult._fields:
            np.testing.assert_array_equal(getattr(batched, name)[run], getattr(single, name))
    assert not np.array_equal(batched.returns[0], batched.returns[1])  # the runs differ
    # Same (trainer, num_episodes, deterministic): no new compilation for new keys/params.
    compiles, compile_program = [], evaluation.compile_program

    def counted(*args, **options):
        compiles.append(1)
        return compile_program(*args, **options)

    monkeypatch.setattr(evaluation, "compile_program", counted)
    evaluate_runs(trainer, jax.tree.map(lambda x: x + 0.01, params_r), key, 8, False)
    assert not compiles
    evaluate_runs(trainer, params_r, key, 4, False)  # other settings: one more program
    assert len(compiles) == 1


def test_summarize_eval_uses_finished_episodes_per_run():
    result = EvalResult(
        returns=np.array([[1.0, 3.0, 99.0], [2.0, 2.0, 2.0]], np.float32),
        lengths=np.array([[10, 30, 5], [4, 4, 4]], np.int32),
        finished=np.array([[True, True, False], [True, True, True]]),
    )
    first, second = summarize_eval(result)
    assert first == {
        "return_mean": 2.0,
        "return_std": 1.0,
        "return_min": 1.0,
        "return_max": 3.0,
        "length_mean": 20.0,
        "episodes_finished": 2,
        "episodes": 3,
    }
    assert second["return_mean"] == 2.0 and second["return_std"] == 0.0
    assert second["episodes_finished"] == 3
