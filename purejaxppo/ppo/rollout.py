"""Rollout: one `lax.scan` over `num_steps`, acting in all N envs at once."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from purejaxppo.envs.spec import EnvRunner, EnvSpec, step_envs
from purejaxppo.ppo.distributions import noise_from_bits
from purejaxppo.ppo.networks import Network, act, act_without_value, values_of
from purejaxppo.ppo.normalize import RunningStats, normalize_obs
from purejaxppo.ppo.randomness import draw_bits, key_words, keys_from_bits
from purejaxppo.ppo.types import RolloutNoise, Transition

# On the CPU, a run's rollout of at most this many samples (T x N) gets its values after the
# scan, in one pass over all of them: fewer kernels per step. Larger rollouts compute them
# step by step, where each step's activations stay in cache. Cartpole, one-process A/B on
# the project's 2-core CPU, the whole update: after the scan 1 x 4 4% faster, 16 x 4 4%,
# 1 x 64 6%; 1 x 512 and 16 x 64 unchanged; 1 x 2048 5% slower.
CPU_VALUES_AFTER_MAX_SAMPLES = 16384


def values_after_scan(num_samples: int) -> bool:
    """Whether a rollout of `num_samples` (T x N) per run computes its values after the scan:
    on the CPU up to `CPU_VALUES_AFTER_MAX_SAMPLES`; elsewhere always (fewer kernels per step;
    not yet measured on an accelerator)."""
    return jax.default_backend() != "cpu" or num_samples <= CPU_VALUES_AFTER_MAX_SAMPLES


def rollout_noise_bit_shapes(
    spec: EnvSpec, num_steps: int, num_envs: int, words: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The uint32 bits a `RolloutNoise` is made of: `[T, N, A]` and `[T, N, words]` (words:
    `key_words` of the key implementation)."""
    return (num_steps, num_envs, spec.action_dim), (num_steps, num_envs, words)


def rollout_noise_from_bits(
    spec: EnvSpec, action_bits: jax.Array, key_bits: jax.Array, like: jax.Array
) -> RolloutNoise:
    """`RolloutNoise` from the bits of `rollout_noise_bit_shapes` (keys of `like`'s kind)."""
    return RolloutNoise(noise_from_bits(spec.discrete, action_bits), keys_from_bits(key_bits, like))


def draw_rollout_noise(
    spec: EnvSpec, key: jax.Array, num_steps: int, num_envs: int
) -> RolloutNoise:
    """The noise of a rollout of `num_steps` in `num_envs` envs, from `key` (one draw)."""
    shapes = rollout_noise_bit_shapes(spec, num_steps, num_envs, key_words(key))
    return rollout_noise_from_bits(spec, *draw_bits(key, shapes), like=key)


def collect_rollout(
    network: Network,
    spec: EnvSpec,
    params: dict,
    runner: EnvRunner,
    hidden: jax.Array | None,
    noise: RolloutNoise,
    obs_stats: RunningStats | None = None,
    values_after: bool | None = None,
) -> tuple[EnvRunner, jax.Array, Transition]:
    """Act for T steps in every env of `runner`, starting from the network's memory `hidden`
    `[N, H]` (None: feed-forward), with the randomness `noise` (`[T, N]` env steps; see
    `draw_rollout_noise`); returns the new runner and memory and the rollout.

    With `obs_stats` the policy sees observations normalised by them (`policy_input`).
    `values_after` computes `value` `[T, N]` after the scan from the observations and the
    memory of each step, not in it (the same values); None picks `values_after_scan`.
    """
    num_steps, num_envs = noise.env_keys.shape
    chex.assert_shape(runner.obs, (num_envs, *spec.obs_shape))
    if values_after is None:
        values_after = values_after_scan(num_steps * num_envs)

    def act_and_step(carry: tuple[EnvRunner, jax.Array], inputs: tuple[jax.Array, jax.Array]):
        runner, hidden = carry
        noise, env_keys = inputs
        first = runner.episode_length == 0  # reset_envs and step_envs zero it at a new episode
        x = policy_input(obs_stats, runner.obs)
        if values_after:
            hidden, dist = act_without_value(network, params, hidden, x, first)
            value = None  # computed after the scan
        else:
            hidden, dist, value = act(network, params, hidden, x, first)
        action = dist.sample_with(noise)
        runner_next, step = step_envs(spec, env_keys, runner, action)
        out = (runner.obs, first, hidden, action, dist.log_prob(action), value, step)
        return (runner_next, hidden), out

    (runner, hidden), (obs, first, memory, action, log_prob, value, step) = jax.lax.scan(
        act_and_step, (runner, hidden), (noise.action, noise.env_keys)
    )
    if values_after:
        value = values_of(network, params, memory, policy_input(obs_stats, obs))
    # V(final_obs[t]) continues the episode of obs[t], after the memory of step t.
    next_value = network.apply(
        params,
        memory,
        policy_input(obs_stats, step.final_obs),
        jnp.zeros_like(first),
        method="step_value",
    )
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
    return runner, hidden, transition


def policy_input(obs_stats: RunningStats | None, obs: jax.Array) -> jax.Array:
    """What the network is fed: `obs` normalised by `obs_stats`, or as is if they are None."""
    return obs if obs_stats is None else normalize_obs(obs_stats, obs)


def episode_ends(transition: Transition) -> jax.Array:
    """`[T, N]` bool: an episode ended (terminated or truncated) at this step."""
    return jnp.logical_or(transition.terminated, transition.truncated)
