"""Population-based training's step, pure: on a population `[R]` ranked by a fitness, the
bottom fraction copies runs of the top fraction (exploit) and perturbs their searched
hyperparameters (explore). The compiled chunks of `purejaxppo.runs.pbt` run exactly this
function between segments of updates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.config import Hyperparams
from purejaxppo.ppo.types import TrainState
from purejaxppo.runs.pbt_settings import PBTConfig


class Exploited(NamedTuple):
    """The population after one exploit-and-explore step (every leaf `[R, ...]`)."""

    state: TrainState
    hyperparams: Hyperparams
    parents: jax.Array  # int32 [R]: the run each run continues (itself if not replaced)
    replaced: jax.Array  # bool [R]: this run was in the bottom fraction and copied a parent


def rank_runs(fitness: jax.Array) -> jax.Array:
    """Run indices `[R]` from the fittest down; ties go to the lower run index, NaN last."""
    fitness = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    return jnp.argsort(-fitness, stable=True)


def choose_parents(
    pbt: PBTConfig, fitness: jax.Array, key: jax.Array, num_runs: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """`(parents [P], replaced [P])`: each run of the bottom `pbt.replaced(R)` of the first
    `num_runs` = R runs (default: all P) draws a parent uniformly from the top as many;
    every other run, and every row after the first R (padding), is its own parent."""
    padded = fitness.shape[0]
    num_runs = padded if num_runs is None else num_runs
    count = pbt.replaced(num_runs)
    order = rank_runs(fitness[:num_runs])
    top, bottom = order[:count], order[num_runs - count :]
    drawn = top[jax.random.randint(key, (count,), 0, count)]
    own = jnp.arange(padded, dtype=jnp.int32)
    parents = own.at[bottom].set(drawn.astype(jnp.int32))
    replaced = jnp.zeros(padded, bool).at[bottom].set(True)
    return parents, replaced


def inherit_state(state: TrainState, parents: jax.Array) -> TrainState:
    """What a replaced run takes from its parent: parameters, optimizer state and the
    observation / return statistics. Its envs, GRU carries, per-env discounted returns, key
    and update count stay its own."""

    def take(tree: Any) -> Any:
        return jax.tree.map(lambda leaf: leaf[parents], tree)

    norm = state.norm._replace(obs=take(state.norm.obs), ret=take(state.norm.ret))
    return state._replace(params=take(state.params), opt_state=take(state.opt_state), norm=norm)


def explore_hyperparams(
    pbt: PBTConfig,
    bounds: Sequence[tuple[str, float, float]],
    hyperparams: Hyperparams,
    parents: jax.Array,
    replaced: jax.Array,
    key: jax.Array,
) -> Hyperparams:
    """Every run takes its parent's hyperparameters; a replaced run's searched ones are then
    multiplied by `pbt.perturb[0]` or `[1]` (a fair coin per name) and clipped to `bounds`."""
    inherited = jax.tree.map(lambda leaf: leaf[parents], hyperparams)
    changes = {}
    low_factor, high_factor = pbt.perturb
    for index, (name, low, high) in enumerate(bounds):
        coin = jax.random.bernoulli(jax.random.fold_in(key, index), 0.5, parents.shape)
        factor = jnp.where(coin, high_factor, low_factor).astype(jnp.float32)
        value = getattr(inherited, name)
        perturbed = jnp.clip(value * factor, np.float32(low), np.float32(high))
        changes[name] = jnp.where(replaced, perturbed, value).astype(value.dtype)
    return inherited.replace(**changes)


def exploit_and_explore(
    pbt: PBTConfig,
    bounds: Sequence[tuple[str, float, float]],
    fitness: jax.Array,
    state: TrainState,
    hyperparams: Hyperparams,
    key: jax.Array,
    num_runs: int | None = None,
) -> Exploited:
    """One PBT step on a population of R = `num_runs` runs (default: every row; fitness
    `[P]`, every leaf `[P, ...]`, rows after the first R are padding that continues itself):
    the bottom fraction copies runs of the top fraction (`choose_parents`, `inherit_state`)
    and perturbs their searched hyperparameters within `bounds` (`explore_hyperparams`).
    Runs not replaced come out bit for bit as they went in."""
    key_parents, key_explore = jax.random.split(key)
    parents, replaced = choose_parents(pbt, fitness, key_parents, num_runs)
    new_state = inherit_state(state, parents)
    new_hps = explore_hyperparams(pbt, bounds, hyperparams, parents, replaced, key_explore)
    return Exploited(new_state, new_hps, parents, replaced)
