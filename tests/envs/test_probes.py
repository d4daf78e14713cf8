"""Probe tasks: the learner finds known values and best actions, discrete and continuous."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import probe_config
from suite_helpers import jit_fast

from purejaxppo import Hyperparams, make_train
from purejaxppo.envs import probes
from purejaxppo.ppo.networks import act

# Each test trains 120 updates: learning tests, skipped by the quick suite.
pytestmark = pytest.mark.slow

PROBE = probe_config(num_steps=16, num_updates=120)
HP = Hyperparams(learning_rate=3e-3, gamma=0.9, ent_coef=0.0)


def train_probe(env, seed=0):
    trainer = make_train(PROBE, env=env)
    out = jit_fast(trainer)(jax.random.key(seed), HP)
    return trainer, out.state.params


def value_at(trainer, params, obs):
    return np.asarray(act(trainer.network, params, None, jnp.asarray(obs)[:, None], None).value)


def test_constant_reward_value():
    trainer, params = train_probe(probes.ConstantReward())
    np.testing.assert_allclose(value_at(trainer, params, [0.0]), [1.0], atol=0.1)


def test_observation_dependent_value():
    trainer, params = train_probe(probes.ObservationReward())
    np.testing.assert_allclose(value_at(trainer, params, [-1.0, 1.0]), [-1.0, 1.0], atol=0.15)


def test_one_step_discounting():
    trainer, params = train_probe(probes.TwoStepDiscount())
    np.testing.assert_allclose(value_at(trainer, params, [0.0, 1.0]), [HP.gamma, 1.0], atol=0.1)


def policy_at(trainer, params, obs):
    return act(trainer.network, params, None, jnp.asarray(obs)[:, None], None).dist


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_action_dependent_reward(continuous):
    trainer, params = train_probe(probes.ActionReward(continuous=continuous))
    dist = policy_at(trainer, params, [0.0])
    if continuous:
        np.testing.assert_allclose(dist.mode()[0, 0], 0.5, atol=0.1)
    else:
        assert float(jnp.exp(dist.log_prob(jnp.array([1])))[0]) > 0.95


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_observation_and_action_dependent_reward(continuous):
    trainer, params = train_probe(probes.ObservationActionReward(continuous=continuous))
    dist = policy_at(trainer, params, [-1.0, 1.0])
    if continuous:
        np.testing.assert_allclose(dist.mode()[:, 0], [-0.5, 0.5], atol=0.15)
    else:
        best = jnp.array([0, 1])
        assert np.all(np.asarray(jnp.exp(dist.log_prob(best))) > 0.95)
