"""Running statistics for observation normalisation and reward scaling.

Both are updated once per rollout from all its envs (per run: under `vmap` each run keeps its
own), merged with the parallel mean/variance formula of Chan, Golub and LeVeque:

    n = n_a + n_b,  mean = mean_a + d n_b / n,  M2 = var_a n_a + var_b n_b + d^2 n_a n_b / n

with `d = mean_b - mean_a`, so the statistics equal numpy's over all data seen so far.

- Observations: the policy sees `clip((obs - mean) / sqrt(var + eps), -10, 10)` with the
  statistics frozen for the whole rollout and its update (so the probability ratio is exactly
  1 on the first epoch); the statistics then absorb the rollout's raw observations.
- Rewards: each env keeps its discounted return `G_t = r_t + gamma G_{t-1}` (restarted after
  an episode ends); rewards are divided by the running std of `G` (after it absorbed this
  rollout's `G`), which keeps value targets O(1) whatever the reward's scale.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

OBS_CLIP = 10.0
EPS = 1e-8


class RunningStats(NamedTuple):
    """Mean and (population) variance of everything merged so far, elementwise `[*shape]`."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array  # float32 scalar: samples merged


class Normalizer(NamedTuple):
    """Per-run normalisation state, carried in `TrainState` whether or not it is switched on."""

    obs: RunningStats  # [*obs_shape]
    ret: RunningStats  # scalar statistics of the discounted return
    discounted_return: jax.Array  # [N] running discounted return of each env's episode


def init_stats(shape: tuple[int, ...]) -> RunningStats:
    """No data yet: mean 0, variance 1 (the identity transform), count 0."""
    return RunningStats(
        jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.zeros((), jnp.float32)
    )


def init_normalizer(obs_shape: tuple[int, ...], num_envs: int) -> Normalizer:
    return Normalizer(init_stats(obs_shape), init_stats(()), jnp.zeros((num_envs,), jnp.float32))


def merge_stats(stats: RunningStats, data: jax.Array) -> RunningStats:
    """Absorb `data` `[B, *shape]` (B samples) into `stats` `[*shape]`."""
    batch_count = jnp.asarray(data.shape[0], jnp.float32)
    batch_mean = jnp.mean(data, axis=0)
    batch_var = jnp.var(data, axis=0)
    count = stats.count + batch_count
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * (batch_count / count)
    m2 = stats.var * stats.count + batch_var * batch_count
    m2 = m2 + jnp.square(delta) * (stats.count * batch_count / count)
    return RunningStats(mean, m2 / count, count)


def normalize_obs(stats: RunningStats, obs: jax.Array) -> jax.Array:
    """`obs` `[..., *shape]` standardised by `stats` and clipped to +-10."""
    z = (obs - stats.mean) * jax.lax.rsqrt(stats.var + EPS)
    return jnp.clip(z, -OBS_CLIP, OBS_CLIP)


def discounted_returns(
    start: jax.Array, reward: jax.Array, done: jax.Array, gamma: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """Running discounted returns `[T, N]` from `start` `[N]`, restarting after `done`.

    `G_t = r_t + gamma G_{t-1}`, with `G_{t-1}` taken as 0 where step t-1 ended an episode.
    Returns `G` `[T, N]` and the carry for the next rollout `[N]` (0 where the last step ended
    an episode).
    """

    def step(carry: jax.Array, x: tuple[jax.Array, jax.Array]):
        r, d = x
        g = r + gamma * carry
        return jnp.where(d, 0.0, g), g

    carry, returns = jax.lax.scan(step, start, (reward, done))
    return returns, carry


def scale_rewards(
    norm: Normalizer, reward: jax.Array, done: jax.Array, gamma: jax.Array | float
) -> tuple[Normalizer, jax.Array]:
    """Absorb the rollout's discounted returns into `norm.ret`, then divide `reward` `[T, N]`
    by their running std."""
    returns, carry = discounted_returns(norm.discounted_return, reward, done, gamma)
    ret = merge_stats(norm.ret, returns.reshape(-1))
    scaled = reward * jax.lax.rsqrt(ret.var + EPS)
    return norm._replace(ret=ret, discounted_return=carry), scaled
