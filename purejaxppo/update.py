"""The policy/value update: `update_epochs` passes of shuffled minibatch optimizer steps."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from purejaxppo.config import Hyperparams, PPOConfig
from purejaxppo.loss import Batch, LossInfo, ppo_loss
from purejaxppo.networks import ActorCritic
from purejaxppo.permutation import random_permutation
from purejaxppo.rollout import Transition


def learning_rate_at(config: PPOConfig, hp: Hyperparams, update: jax.Array) -> jax.Array:
    """Learning rate during update number `update` (0-based): linear decay to 0 if annealed
    (and 0, never negative, past `num_updates`)."""
    if not config.anneal_lr:
        return jnp.asarray(hp.learning_rate, jnp.float32)
    return hp.learning_rate * jnp.maximum(0.0, 1.0 - update / config.num_updates)


def make_optimizer(config: PPOConfig, hp: Hyperparams) -> optax.GradientTransformation:
    """Global-norm clipping then Adam, reading the (traced) learning rate from `hp`."""
    steps_per_update = config.update_epochs * config.num_minibatches

    def schedule(count: jax.Array) -> jax.Array:
        return learning_rate_at(config, hp, count // steps_per_update)

    return optax.chain(
        optax.clip_by_global_norm(hp.max_grad_norm),
        optax.adam(schedule, eps=1e-5),
    )


def flatten_rollout(transition: Transition, advantage: jax.Array, target: jax.Array) -> Batch:
    """`[T, N, ...]` rollout and GAE -> `[T * N, ...]` samples."""
    batch = Batch(
        obs=transition.obs,
        action=transition.action,
        log_prob=transition.log_prob,
        value=transition.value,
        advantage=advantage,
        target=target,
    )
    return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), batch)


def shuffle_into_minibatches(batch: Batch, key: jax.Array, num_minibatches: int) -> Batch:
    """`[B, ...]` -> `[num_minibatches, B / num_minibatches, ...]` in a random order."""
    size = batch.obs.shape[0]
    order = random_permutation(key, size)
    return jax.tree.map(
        lambda x: jnp.take(x, order, axis=0).reshape((num_minibatches, -1, *x.shape[1:])), batch
    )


def update_policy(
    network: ActorCritic,
    config: PPOConfig,
    hp: Hyperparams,
    params: Any,
    opt_state: Any,
    batch: Batch,
    key: jax.Array,
) -> tuple[Any, Any, LossInfo, jax.Array]:
    """Run `update_epochs x num_minibatches` optimizer steps on `batch` `[B, ...]`.

    Returns the new params and optimizer state, the loss diagnostics and the pre-clipping
    gradient norm, each averaged over all steps.
    """
    optimizer = make_optimizer(config, hp)
    grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)

    def minibatch_step(carry, minibatch: Batch):
        params, opt_state = carry
        (_, info), grads = grad_fn(params, network, config, hp, minibatch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), (info, optax.tree.norm(grads))

    def epoch(carry, key: jax.Array):
        minibatches = shuffle_into_minibatches(batch, key, config.num_minibatches)
        return jax.lax.scan(minibatch_step, carry, minibatches)

    keys = jax.random.split(key, config.update_epochs)
    (params, opt_state), (info, grad_norm) = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, jax.tree.map(jnp.mean, info), jnp.mean(grad_norm)
