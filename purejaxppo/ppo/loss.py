"""The PPO objective: clipped surrogate, (optionally clipped) value loss, entropy bonus."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purejaxppo.config import Hyperparams, PPOConfig
from purejaxppo.ppo.networks import replay
from purejaxppo.ppo.parts import TrainerParts
from purejaxppo.ppo.types import Batch, LossInfo


def clipped_surrogate_loss(
    ratio: jax.Array, advantage: jax.Array, clip_eps: jax.Array | float
) -> jax.Array:
    """Negated PPO-clip objective: mean of -min(r A, clip(r, 1-eps, 1+eps) A) over `[B]`."""
    unclipped = ratio * advantage
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage
    return -jnp.mean(jnp.minimum(unclipped, clipped))


def value_loss(
    value: jax.Array,
    old_value: jax.Array,
    target: jax.Array,
    clip_eps: jax.Array | float,
    clip: bool,
) -> jax.Array:
    """0.5 * squared error `[B]` -> scalar; with `clip`, the max with the error of the value
    kept within `clip_eps` of the value that collected the data."""
    error = jnp.square(value - target)
    if clip:
        clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
        error = jnp.maximum(error, jnp.square(clipped - target))
    return 0.5 * jnp.mean(error)


def standardize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """`x` shifted to mean 0 and scaled to std 1 over all its elements."""
    return (x - x.mean()) / (x.std() + eps)


def standardize_advantages(config: PPOConfig, batch: Batch) -> Batch:
    """The batch with its advantages standardised over the batch (if the config says so)."""
    if not config.normalize_advantages:
        return batch
    return batch._replace(advantage=standardize(batch.advantage))


def ppo_objective(
    trainer: TrainerParts, hp: Hyperparams, params: dict, batch: Batch
) -> tuple[jax.Array, LossInfo]:
    """Total loss (policy + vf_coef * value - ent_coef * entropy) and its diagnostics, on the
    batch's advantages as they are (`standardize_advantages` first if the config says so);
    every term is a mean over the samples. The policy and values are `replay`ed over the
    batch: flat samples, or sequences from the `rnn_state` at their start."""
    dist, value = replay(trainer.network, params, batch)
    log_ratio = dist.log_prob(batch.action) - batch.log_prob
    ratio = jnp.exp(log_ratio)
    policy = clipped_surrogate_loss(ratio, batch.advantage, hp.clip_eps)
    clip_value = trainer.config.clip_value_loss
    critic = value_loss(value, batch.value, batch.target, hp.clip_eps, clip_value)
    entropy = jnp.mean(dist.entropy())
    total = policy + hp.vf_coef * critic - hp.ent_coef * entropy
    info = LossInfo(
        total_loss=total,
        policy_loss=policy,
        value_loss=critic,
        entropy=entropy,
        approx_kl=jax.lax.stop_gradient(jnp.mean((ratio - 1.0) - log_ratio)),
        clip_fraction=jax.lax.stop_gradient(jnp.mean(jnp.abs(ratio - 1.0) > hp.clip_eps)),
    )
    return total, info
