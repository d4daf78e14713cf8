"""Generalised advantage estimation that tells termination from truncation.

    delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}
    done_t  = terminated_t or truncated_t
    target_t = A_t + value_t

`next_value_t` is V(final_observation_t): the observation after step t before auto-reset.
The recursion stops at every episode end; the bootstrap is cut only at a true termination.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_gae(
    reward: jax.Array,
    value: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: jax.Array | float,
    gae_lambda: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets, both `[T, N]`, from time-major `[T, N]` inputs."""
    not_terminated = 1.0 - terminated.astype(value.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(value.dtype)
    delta = reward + gamma * not_terminated * next_value - value
    decay = gamma * gae_lambda * not_done

    def backward(advantage_next: jax.Array, step: tuple[jax.Array, jax.Array]):
        delta_t, decay_t = step
        advantage = delta_t + decay_t * advantage_next
        return advantage, advantage

    _, advantage = jax.lax.scan(backward, jnp.zeros_like(value[0]), (delta, decay), reverse=True)
    return advantage, advantage + value
