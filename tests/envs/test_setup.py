"""Environments: names and instances, image observations (flattened or CNN), action bounds."""

import chex
import jax
import numpy as np
import pytest
from suite_helpers import jit_fast

from purejaxppo import ConfigError, Hyperparams, PPOConfig, make_env, make_train


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_minatar_image_observations_train(network):
    config = PPOConfig(
        env="Breakout-MinAtar",
        num_envs=4,
        num_steps=16,
        total_timesteps=4 * 16 * 2,
        num_minibatches=2,
        update_epochs=1,
        hidden_sizes=(32,),
        activation="relu",
        network=network,
    )
    trainer = make_train(config)
    assert trainer.env.obs_shape == (10, 10, 4) and trainer.env.discrete
    out = jit_fast(trainer)(jax.random.key(0), Hyperparams())
    chex.assert_shape(out.state.runner.obs, (4, 10, 10, 4))
    assert np.all(np.isfinite(np.asarray(out.metrics.total_loss)))
    leaves = jax.tree.leaves(out.state.params)
    has_conv = any(leaf.ndim == 4 for leaf in leaves)
    assert has_conv == (network == "cnn")


def test_continuous_spec_has_bounds():
    spec = make_env("Pendulum-v1")
    assert not spec.discrete and spec.action_dim == 1
    np.testing.assert_allclose(spec.action_low, [-2.0])
    np.testing.assert_allclose(spec.action_high, [2.0])


def test_cnn_needs_image_observations():
    with pytest.raises(ConfigError, match="needs image observations"):
        make_train(PPOConfig(env="CartPole-v1", network="cnn"))


def test_unknown_env_suggests_close_names():
    with pytest.raises(ConfigError, match="did you mean Acrobot-v1"):
        make_env("Acrobot-v2")
