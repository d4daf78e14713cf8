"""The policy/value update: `update_epochs` passes of shuffled minibatch optimizer steps."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from purejaxppo.config import Hyperparams, PPOConfig
from purejaxppo.ppo.loss import ppo_objective, standardize_advantages
from purejaxppo.ppo.parts import TrainerParts
from purejaxppo.ppo.permutation import random_permutation
from purejaxppo.ppo.types import Batch, LearnerState, LossInfo, Schedules, Transition, UpdateInfo

# One optimizer step: (learner, minibatch) -> (learner, (loss diagnostics, gradient norm)).
MinibatchStep = Callable[[LearnerState, Batch], tuple[LearnerState, tuple[LossInfo, jax.Array]]]


def make_optimizer(
    hp: Hyperparams, learning_rate: jax.Array | float
) -> optax.GradientTransformation:
    """Global-norm clipping then Adam at `learning_rate` (a traced scalar: the schedule is
    evaluated per update by the caller, so the optimizer state has no step count of its own).

    Both act on all parameters concatenated into one vector (`optax.flatten`): the same
    per-element Adam arithmetic in a few fused ops instead of a few per parameter array,
    which compiles and runs faster. The optimizer state is flat: `mu` and `nu` are `[P]`
    vectors (checkpoint format 2 onwards)."""
    return optax.flatten(
        optax.chain(
            optax.clip_by_global_norm(hp.max_grad_norm),
            optax.adam(learning_rate, eps=1e-5),
        )
    )


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, taken on their concatenation (XLA shares that
    concatenation with the one `optax.flatten` makes: one reduction, not one per leaf)."""
    flat, _ = jax.flatten_util.ravel_pytree(tree)
    return jnp.sqrt(jnp.sum(jnp.square(flat)))


def make_batch(
    config: PPOConfig,
    transition: Transition,
    advantage: jax.Array,
    target: jax.Array,
    rnn_state: jax.Array | None,
) -> Batch:
    """The update's samples: `[T * N, ...]` flat (feed-forward), or `[T, N, ...]` sequences
    with their `first` flags and the `rnn_state` `[N, H]` at their start (recurrent)."""
    batch = Batch(
        obs=transition.obs,
        action=transition.action,
        log_prob=transition.log_prob,
        value=transition.value,
        advantage=advantage,
        target=target,
    )
    if config.recurrent:
        return batch._replace(first=transition.first, rnn_state=rnn_state)
    return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), batch)


def shuffle_into_minibatches(batch: Batch, key: jax.Array, num_minibatches: int) -> Batch:
    """`[B, ...]` -> `[num_minibatches, B / num_minibatches, ...]` in a random order."""
    size = batch.obs.shape[0]
    order = random_permutation(key, size)
    return jax.tree.map(
        lambda x: jnp.take(x, order, axis=0).reshape((num_minibatches, -1, *x.shape[1:])), batch
    )


def shuffle_sequences_into_minibatches(batch: Batch, key: jax.Array, num_minibatches: int) -> Batch:
    """Sequences `[T, N, ...]` (`rnn_state` `[N, H]`) -> `[num_minibatches, T, N / m, ...]`
    (`rnn_state` `[num_minibatches, N / m, H]`): whole env sequences in a random order."""
    order = random_permutation(key, batch.rnn_state.shape[0])

    def split_envs(x: jax.Array, axis: int) -> jax.Array:
        x = jnp.take(x, order, axis=axis)
        shape = (*x.shape[:axis], num_minibatches, -1, *x.shape[axis + 1 :])
        return jnp.moveaxis(x.reshape(shape), axis, 0)

    sequences = jax.tree.map(lambda x: split_envs(x, 1), batch._replace(rnn_state=None))
    return sequences._replace(rnn_state=split_envs(batch.rnn_state, 0))


def make_minibatches(config: PPOConfig, batch: Batch, key: jax.Array) -> Batch:
    """One epoch's minibatches, stacked on a leading `[num_minibatches]` axis."""
    if config.recurrent:
        return shuffle_sequences_into_minibatches(batch, key, config.num_minibatches)
    return shuffle_into_minibatches(batch, key, config.num_minibatches)


def gradient_slices(config: PPOConfig, max_slice: int | None) -> int:
    """How many equal slices a minibatch's gradient is computed in: the fewest of at most
    `max_slice` samples each that divide the minibatch, if such slices hold at least half of
    `max_slice` (smaller ones would cost more than they save); otherwise 1, as for recurrent
    sequences or `max_slice` None (`Tuning.gradient_slice`)."""
    size = config.batch_size // config.num_minibatches
    if config.recurrent or max_slice is None or size <= max_slice:
        return 1
    fewest = -(-size // max_slice)
    return next((c for c in range(fewest, 2 * size // max_slice + 1) if size % c == 0), 1)


def minibatch_gradient(
    trainer: TrainerParts, hp: Hyperparams, params: Any, minibatch: Batch, slices: int = 1
) -> tuple[LossInfo, Any]:
    """The loss diagnostics and gradient of one minibatch `[b, ...]`.

    With `slices > 1` (flat samples), advantages are standardised over the whole minibatch,
    then the gradients and diagnostics of `slices` equal slices are averaged in a scan: the
    same mean loss and gradient, up to float summation order, from passes whose activations
    fit in cache.
    """
    minibatch = standardize_advantages(trainer.config, minibatch)
    grad_fn = jax.value_and_grad(ppo_objective, argnums=2, has_aux=True)
    if slices == 1:
        (_, info), grads = grad_fn(trainer, hp, params, minibatch)
        return info, grads

    def add_slice(total, part: Batch):
        (_, info), grads = grad_fn(trainer, hp, params, part)
        return jax.tree.map(jnp.add, total, (info, grads)), None

    sliced = jax.tree.map(lambda x: x.reshape((slices, -1, *x.shape[1:])), minibatch)
    zero_info = LossInfo(*([jnp.zeros((), jnp.float32)] * len(LossInfo._fields)))
    zeros = (zero_info, jax.tree.map(jnp.zeros_like, params))
    (info, grads), _ = jax.lax.scan(add_slice, zeros, sliced)
    return jax.tree.map(lambda x: x / slices, (info, grads))


def minibatch_step(
    trainer: TrainerParts,
    hp: Hyperparams,
    optimizer: optax.GradientTransformation,
    slices: int,
    learner: LearnerState,
    minibatch: Batch,
) -> tuple[LearnerState, tuple[LossInfo, jax.Array]]:
    """One optimizer step on `minibatch`; also returns its loss diagnostics and gradient norm."""
    info, grads = minibatch_gradient(trainer, hp, learner.params, minibatch, slices)
    updates, opt_state = optimizer.update(grads, learner.opt_state, learner.params)
    params = optax.apply_updates(learner.params, updates)
    return LearnerState(params, opt_state), (info, global_norm(grads))


def run_epoch(
    config: PPOConfig,
    hp: Hyperparams,
    step: MinibatchStep,
    batch: Batch,
    carry: tuple[LearnerState, jax.Array],
    key: jax.Array,
) -> tuple[tuple[LearnerState, jax.Array], tuple[LossInfo, jax.Array, jax.Array]]:
    """One epoch of `step` over `batch` shuffled with `key`. The carry holds the learner and
    whether a target-KL stop happened: from then on an epoch's result is discarded. Returns
    its per-step diagnostics and gradient norms `[M]`, and whether it was kept."""
    learner, stopped = carry
    minibatches = make_minibatches(config, batch, key)
    new_learner, (info, grad_norm) = jax.lax.scan(step, learner, minibatches)
    if not config.target_kl_stop:
        return (new_learner, stopped), (info, grad_norm, ~stopped)
    learner = jax.tree.map(lambda old, new: jnp.where(stopped, old, new), learner, new_learner)
    kept = ~stopped
    stopped = stopped | (jnp.mean(info.approx_kl) > hp.target_kl)
    return (learner, stopped), (info, grad_norm, kept)


def update_policy(
    trainer: TrainerParts,
    hp: Hyperparams,
    learner: LearnerState,
    batch: Batch,
    epoch_keys: jax.Array,
    schedules: Schedules,
) -> tuple[LearnerState, UpdateInfo]:
    """Run `update_epochs x num_minibatches` optimizer steps on `batch` `[B, ...]`, epoch e
    shuffled with `epoch_keys[e]` (`[update_epochs]` keys), at the update's scheduled
    learning rate and entropy coefficient.

    With `config.target_kl_stop`, the epochs after the first whose mean approximate KL
    exceeds `hp.target_kl` are skipped: they are computed (per run under `vmap`, there is no
    Python control flow) but their params and optimizer state are discarded. Each minibatch's
    gradient is taken in `gradient_slices(config, trainer.tuning.gradient_slice)` passes.
    """
    config = trainer.config
    hp = hp.replace(ent_coef=schedules.ent_coef)
    optimizer = make_optimizer(hp, schedules.learning_rate)
    slices = gradient_slices(config, trainer.tuning.gradient_slice)
    step = functools.partial(minibatch_step, trainer, hp, optimizer, slices)
    epoch = functools.partial(run_epoch, config, hp, step, batch)
    chex.assert_shape(epoch_keys, (config.update_epochs,))
    start = (learner, jnp.zeros((), bool))
    (learner, _), (info, grad_norm, kept) = jax.lax.scan(epoch, start, epoch_keys)
    epochs = jnp.sum(kept, dtype=jnp.int32)
    weight = kept.astype(jnp.float32)[:, None] / epochs  # [E, 1]: the first epoch is always kept

    def mean_over_kept(x: jax.Array) -> jax.Array:  # [E, M] -> scalar
        return jnp.sum(x * weight) / x.shape[1]

    loss = jax.tree.map(mean_over_kept, info)
    return learner, UpdateInfo(loss, mean_over_kept(grad_norm), epochs)
