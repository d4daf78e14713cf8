"""Rollout: one `lax.scan` over `num_steps`, acting in all N envs at once."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

from purejaxppo.envs.setup import EnvSetup, step_envs
from purejaxppo.ppo.distributions import noise_from_bits
from purejaxppo.ppo.networks import act, value_after
from purejaxppo.ppo.normalize import RunningStats, normalize_obs
from purejaxppo.ppo.parts import TrainerParts
from purejaxppo.ppo.randomness import keys_from_bits
from purejaxppo.ppo.types import Actors, RolloutNoise, Transition


def rollout_noise_bit_shapes(
    setup: EnvSetup, num_steps: int, num_envs: int, words: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The uint32 bits a `RolloutNoise` is made of: `[T, N, A]` and `[T, N, words]` (words:
    `key_words` of the key implementation)."""
    return (num_steps, num_envs, setup.action_dim), (num_steps, num_envs, words)


def rollout_noise_from_bits(
    setup: EnvSetup, action_bits: jax.Array, key_bits: jax.Array, like: jax.Array
) -> RolloutNoise:
    """`RolloutNoise` from the bits of `rollout_noise_bit_shapes` (keys of `like`'s kind)."""
    return RolloutNoise(
        noise_from_bits(setup.discrete, action_bits), keys_from_bits(key_bits, like)
    )


def collect_rollout(
    trainer: TrainerParts,
    params: Any,
    actors: Actors,
    noise: RolloutNoise,
    obs_stats: RunningStats | None = None,
) -> tuple[Actors, Transition]:
    """Act for T steps in every env of `actors` (N envs and their `rnn_state` `[N, H]`, None
    for a feed-forward network) with the randomness `noise` (`[T, N]` env steps, as
    `draw_update_randomness` of `purejaxppo.ppo.trainer` draws it); returns the actors after
    them and the rollout.

    With `obs_stats` the policy sees observations normalised by them (`policy_input`).
    Where `trainer.tuning.values_after_scan`, `value` `[T, N]` is computed after the scan
    from the observations and the `rnn_state` of each step, not in it (the same values).
    """
    num_envs = noise.env_keys.shape[1]
    chex.assert_shape(actors.runner.obs, (num_envs, *trainer.env.obs_shape))
    values_after = trainer.tuning.values_after_scan

    def act_and_step(actors: Actors, inputs: tuple[jax.Array, jax.Array]):
        return rollout_step(trainer, params, obs_stats, values_after, actors, inputs)

    actors, (obs, first, rnn_state, action, log_prob, value, step) = jax.lax.scan(
        act_and_step, actors, (noise.action, noise.env_keys)
    )
    if values_after:
        value = value_after(trainer.network, params, rnn_state, policy_input(obs_stats, obs))
    # V(final_obs[t]) continues the episode of obs[t], after the rnn_state of step t.
    final_obs = policy_input(obs_stats, step.final_obs)
    next_value = act(trainer.network, params, rnn_state, final_obs, jnp.zeros_like(first)).value
    transition = Transition(
        obs=obs,
        first=first,
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
    return actors, transition


def rollout_step(
    trainer: TrainerParts,
    params: Any,
    obs_stats: RunningStats | None,
    values_after: bool,
    actors: Actors,
    inputs: tuple[jax.Array, jax.Array],
) -> tuple[Actors, tuple[Any, ...]]:
    """One step of `collect_rollout`'s scan: act in N envs with `inputs` (action noise
    `[N, A]`, env keys `[N]`) and step them. Returns the actors after it and the step's
    `(obs, first, rnn_state, action, log_prob, value, EnvStep)` (`value` None where it is
    computed after the scan)."""
    noise, env_keys = inputs
    runner = actors.runner
    first = runner.episode_length == 0  # reset_envs and step_envs zero it at a new episode
    x = policy_input(obs_stats, runner.obs)
    rnn_state, dist, value = act(
        trainer.network, params, actors.rnn_state, x, first, with_value=not values_after
    )
    action = dist.sample_with(noise)
    runner_next, step = step_envs(trainer.env, env_keys, runner, action)
    out = (runner.obs, first, rnn_state, action, dist.log_prob(action), value, step)
    return Actors(runner_next, rnn_state), out


def policy_input(obs_stats: RunningStats | None, obs: jax.Array) -> jax.Array:
    """What the network is fed: `obs` normalised by `obs_stats`, or as is if they are None."""
    return obs if obs_stats is None else normalize_obs(obs_stats, obs)


def episode_ends(transition: Transition) -> jax.Array:
    """`[T, N]` bool: an episode ended (terminated or truncated) at this step."""
    return jnp.logical_or(transition.terminated, transition.truncated)
