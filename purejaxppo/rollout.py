"""Rollout: one `lax.scan` over `num_steps`, acting in all N envs at once."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from purejaxppo.envs import EnvRunner, EnvSpec, step_envs
from purejaxppo.networks import ActorCritic
from purejaxppo.normalize import RunningStats, normalize_obs


class Transition(NamedTuple):
    """A rollout of T steps in N envs, time-major.

    obs `[T, N, *obs_shape]` (raw, as the env returned it); action `[T, N]` (discrete) or
    `[T, N, D]` (continuous, the unclipped sample); the rest `[T, N]`. `next_value[t]` is the
    value of the observation that followed step t *before* any auto-reset
    (`info["final_observation"]`), so a truncated episode bootstraps from where it was cut.
    `episode_return` / `episode_length` describe the episode that ended at step t and are
    meaningful only where `terminated | truncated`.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


def collect_rollout(
    network: ActorCritic,
    spec: EnvSpec,
    params: dict,
    runner: EnvRunner,
    key: jax.Array,
    num_steps: int,
    obs_stats: RunningStats | None = None,
) -> tuple[EnvRunner, Transition]:
    """Act for `num_steps` in every env of `runner`; returns the new runner and the rollout.

    With `obs_stats` the policy sees observations normalised by them (`policy_input`).
    """

    def act_and_step(runner: EnvRunner, keys: jax.Array):
        dist, value = network.apply(params, policy_input(obs_stats, runner.obs))
        action = dist.sample(keys[0])
        runner_next, step = step_envs(spec, keys[1:], runner, action)
        return runner_next, (runner.obs, action, dist.log_prob(action), value, step)

    # All keys of the rollout in one op: [T, 1 + N] (one to act, one per env to step).
    keys = jax.random.split(key, (num_steps, 1 + runner.obs.shape[0]))
    runner, (obs, action, log_prob, value, step) = jax.lax.scan(act_and_step, runner, keys)
    next_value = network.apply(
        params, policy_input(obs_stats, step.final_obs), method=ActorCritic.value
    )
    transition = Transition(
        obs=obs,
        action=action,
        log_prob=log_prob,
        value=value,
        next_value=next_value,
        reward=step.reward,
        terminated=step.terminated,
        truncated=step.truncated,
        episode_return=step.episode_return,
        episode_length=step.episode_length,
    )
    return runner, transition


def policy_input(obs_stats: RunningStats | None, obs: jax.Array) -> jax.Array:
    """What the network is fed: `obs` normalised by `obs_stats`, or as is if they are None."""
    return obs if obs_stats is None else normalize_obs(obs_stats, obs)


def episode_ends(transition: Transition) -> jax.Array:
    """`[T, N]` bool: an episode ended (terminated or truncated) at this step."""
    return jnp.logical_or(transition.terminated, transition.truncated)
