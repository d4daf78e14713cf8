"""The scheduled hyperparameters: learning rate and entropy coefficient per update."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purejaxppo.config import Hyperparams, PPOConfig
from purejaxppo.ppo.types import Schedules


def schedule_factor(kind: str, progress: jax.Array) -> jax.Array:
    """Decay factor at `progress` in [0, 1] (clamped): 1 (constant), `1 - p` (linear) or
    `(1 + cos(pi p)) / 2` (cosine)."""
    p = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    if kind == "constant":
        return jnp.ones_like(p)
    if kind == "linear":
        return 1.0 - p
    if kind == "cosine":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * p))
    raise ValueError(f"unknown schedule {kind!r}")


def training_progress(config: PPOConfig, update: jax.Array) -> jax.Array:
    """Fraction of the run done before update number `update` (0-based)."""
    return jnp.asarray(update, jnp.float32) / config.num_updates


def learning_rate_at(config: PPOConfig, hp: Hyperparams, update: jax.Array) -> jax.Array:
    """Learning rate during update `update`: `learning_rate` along `config.lr_schedule`
    (never negative, 0 past `num_updates` unless constant)."""
    factor = schedule_factor(config.lr_schedule, training_progress(config, update))
    return jnp.asarray(hp.learning_rate * factor, jnp.float32)


def ent_coef_at(config: PPOConfig, hp: Hyperparams, update: jax.Array) -> jax.Array:
    """Entropy coefficient during update `update`: from `ent_coef` to `ent_coef_end` along
    `config.ent_schedule`."""
    factor = schedule_factor(config.ent_schedule, training_progress(config, update))
    return jnp.asarray(hp.ent_coef_end + (hp.ent_coef - hp.ent_coef_end) * factor, jnp.float32)


def schedules_at(config: PPOConfig, hp: Hyperparams, update: jax.Array) -> Schedules:
    """Both scheduled values during update `update` (0-based)."""
    return Schedules(learning_rate_at(config, hp, update), ent_coef_at(config, hp, update))
