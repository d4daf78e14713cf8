"""Truncation is not termination: on a task that only ends by a time limit, with a clock-free
observation, the value is 1 / (1 - gamma). Treating the time limit as a termination (what
older JAX PPO code does) learns a much smaller value."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import probe_config
from suite_helpers import jit_fast

from purejaxppo import Hyperparams, make_train
from purejaxppo.envs.probes import TruncatedConstant
from purejaxppo.ppo.networks import act

GAMMA = 0.9
LIMIT = 8
CONFIG = probe_config(num_steps=32, num_updates=250)
HP = Hyperparams(learning_rate=3e-3, gamma=GAMMA, ent_coef=0.0)


class TimeLimitAsTermination(TruncatedConstant):
    """The wrong variant, built here: the time limit is reported as a termination."""

    def step_env(self, key, state, action, params):
        obs, state, reward, _, info = super().step_env(key, state, action, params)
        return obs, state, reward, state.time >= self.time_limit, info

    def is_truncated(self, state, params):
        return jnp.asarray(False)


def learned_value(env) -> float:
    trainer = make_train(CONFIG, env=env)
    params = jit_fast(trainer)(jax.random.key(0), HP).state.params
    obs = 0.1 * jax.random.normal(jax.random.key(1), (256, 1))
    return float(jnp.mean(act(trainer.network, params, None, obs, None).value))


def test_truncation_bootstraps_to_infinite_horizon_value():
    true_value = 1.0 / (1.0 - GAMMA)
    assert abs(learned_value(TruncatedConstant(LIMIT)) - true_value) < 0.1 * true_value


def test_time_limit_as_termination_is_biased():
    # Averaged over the unobservable time in episode, the wrong target is
    # mean_k (1 - gamma^k) / (1 - gamma) for k = 1..LIMIT, about 3.6 here.
    wrong_target = np.mean([(1 - GAMMA**k) / (1 - GAMMA) for k in range(1, LIMIT + 1)])
    value = learned_value(TimeLimitAsTermination(LIMIT))
    assert abs(value - wrong_target) < 0.15 * wrong_target
    assert value < 0.5 / (1.0 - GAMMA)
