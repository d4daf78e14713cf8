"""FunctionalEnv: time limit as truncation, auto-reset, final_observation; the README example."""

import importlib.util
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from suite_helpers import assert_trained, jit_fast, tiny_config

from purejaxppo import ConfigError, Hyperparams, PPOConfig, make_env, make_train
from purejaxppo.envs.functional import FunctionalEnv, TimeLimit, TimeLimitState
from purejaxppo.ppo.evaluate import default_max_steps, resolve_max_steps

ROOT = Path(__file__).resolve().parents[2]


def load_example():
    spec = importlib.util.spec_from_file_location("line_env", ROOT / "examples" / "line_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


line_env = load_example()

STAY, LEFT = 1, 0


def at(x: float, time: int = 0) -> TimeLimitState:
    return TimeLimitState(jnp.float32(x), jnp.int32(time))


def test_time_limit_truncates_and_resets():
    env = line_env.make_line_env(max_steps=3)
    key = jax.random.key(0)
    obs, state, reward, terminated, truncated, info = env.step(key, at(0.5, 2), STAY)
    assert bool(truncated) and not bool(terminated)
    np.testing.assert_allclose(info["final_observation"], [0.5])  # where the episode was cut
    np.testing.assert_allclose(reward, -0.5)
    assert int(state.time) == 0
    np.testing.assert_allclose(obs, state.env_state[None])  # the first obs of a new episode
    assert not np.isclose(float(obs[0]), 0.5)


def test_termination_is_not_truncation_even_at_the_limit():
    env = line_env.make_line_env(max_steps=3)
    for time in (0, 2):  # terminates mid-episode, and on the step the limit is reached
        _, state, _, terminated, truncated, info = env.step(jax.random.key(1), at(0.1, time), LEFT)
        assert bool(terminated) and not bool(truncated)
        np.testing.assert_allclose(info["final_observation"], [0.0], atol=1e-6)
        assert int(state.time) == 0


def test_running_episode_keeps_its_state():
    env = line_env.make_line_env(max_steps=3)
    obs, state, _, terminated, truncated, info = env.step(jax.random.key(2), at(0.5, 1), LEFT)
    assert not bool(terminated | truncated)
    np.testing.assert_allclose(obs, [0.4])
    np.testing.assert_allclose(info["final_observation"], obs)
    assert int(state.time) == 2


def test_params_set_the_limit_and_none_has_none():
    env = line_env.make_line_env(max_steps=100)
    _, _, _, _, truncated, _ = env.step(jax.random.key(3), at(0.5, 4), STAY, TimeLimit(5))
    assert bool(truncated)
    env.step(jax.random.key(3), at(0.5, 10**6), STAY, TimeLimit(None))  # no limit: runs on
    _, _, _, _, truncated, _ = env.step(jax.random.key(3), at(0.5, 10**6), STAY, TimeLimit(None))
    assert not bool(truncated)


def test_evaluation_reads_the_time_limit():
    assert default_max_steps(make_env(line_env.make_line_env(max_steps=7))) == 7
    unlimited = FunctionalEnv(
        "Unlimited",
        line_env.reset,
        line_env.step,
        spaces.Box(-1.0, 1.0, (1,), jnp.float32),
        spaces.Discrete(3),
    )
    with pytest.raises(ConfigError, match="has no time limit"):
        resolve_max_steps(make_env(unlimited), None)


def test_bad_declarations_are_config_errors():
    with pytest.raises(ConfigError, match="max_steps_in_episode must be a positive integer"):
        line_env.make_line_env(max_steps=0)
    wrong_shape = FunctionalEnv(
        "Wrong", line_env.reset, line_env.step, spaces.Box(-1, 1, (2,)), spaces.Discrete(3), 10
    )
    with pytest.raises(ConfigError, match=re.escape("reset returns observations (1,)")):
        make_env(wrong_shape)
    matrix_actions = FunctionalEnv(
        "Matrix", line_env.reset, line_env.step, spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (2, 2))
    )
    with pytest.raises(ConfigError, match="must be a vector or a scalar"):
        make_env(matrix_actions)


def scalar_action_env() -> FunctionalEnv:
    """The line with a continuous scalar action (`Box` of shape `()`): a move in [-0.1, 0.1]."""

    def step(key, x, action):
        assert action.shape == (), action.shape  # the env gets a scalar, not `[1]`
        return line_env.step(key, x, 1.0 + action / 0.1)

    box = spaces.Box(-0.1, 0.1, (), jnp.float32)
    return FunctionalEnv(
        "LineScalar", line_env.reset, step, spaces.Box(-1, 1, (1,), jnp.float32), box, 50
    )


def test_readme_example_and_scalar_actions_train():
    """The README's env learns to reach the origin (episodes return about -15 in the first
    updates, about -1.5 after 40 updates); a scalar-action variant trains too."""
    config = PPOConfig(
        env="Line", num_envs=16, num_steps=32, total_timesteps=16 * 32 * 40, hidden_sizes=(32,)
    )
    line = make_train(config, env=line_env.make_line_env())
    scalar = make_train(tiny_config("LineScalar"), env=scalar_action_env())
    assert scalar.env.scalar_action and scalar.env.action_dim == 1
    key, hp = jax.random.key(0), Hyperparams(learning_rate=3e-3)

    def run(key):
        return line(key, hp), scalar(key, hp)

    line_out, scalar_out = jit_fast(run)(key)
    returns = np.asarray(line_out.metrics.episode_return)
    assert np.all(np.isfinite(np.asarray(line_out.metrics.total_loss)))
    early, late = np.nanmean(returns[:5]), np.nanmean(returns[-5:])
    assert late > -3 and early < late - 5, returns
    assert_trained(
        scalar,
        np.asarray(scalar_out.metrics.total_loss),
        np.asarray(scalar_out.state.runner.obs),
    )


def test_readme_shows_the_example():
    """The README's 'Your own environment' code is examples/line_env.py, verbatim."""
    readme = (ROOT / "README.md").read_text()
    source = (ROOT / "examples" / "line_env.py").read_text()
    code = source[source.index("import jax") :]
    assert code in readme
