"""Population-based training inside the compiled chunk: exploit (the bottom runs copy top
runs) and explore (their searched hyperparameters are perturbed), every `PBTConfig.every`
updates, with no host round trip.

`PBTStrategy` is its `PopulationStrategy` (`purejaxppo.runs.strategy`); its carry is the
last fitness `[R]`, its log a `PBTLog`. `exploit_and_explore` (`purejaxppo.runs.pbt_step`)
is the pure step on a population `[R]`. `pbt_chunk` is the
population-level program of a chunk: segments of `every` updates, each run's segment mapped
over the run axis by the placement (vmap, or shard_map over a mesh: no collectives there),
each followed by the exploit step on the whole population, the one place where runs meet
(over a mesh XLA moves the copied runs between devices there).

A step's randomness is `fold_in(key(seed), update)`: the same on every device and process,
and nothing to carry or checkpoint beyond the update count the runs already hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.config import Hyperparams
from purejaxppo.metrics import mean_over_finished
from purejaxppo.ppo.evaluate import evaluate_policy
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import Metrics, TrainState, policy_of
from purejaxppo.runs.compile import compile_program
from purejaxppo.runs.pbt_settings import PBTConfig
from purejaxppo.runs.pbt_step import Exploited, exploit_and_explore
from purejaxppo.runs.placement import Placement, place_runs
from purejaxppo.runs.search import SearchRange, search_bounds
from purejaxppo.runs.strategy import Carried, ChunkCall

# A fixed salt: the PBT stream differs from the runs' own streams of the same seed.
PBT_STREAM = 0x5EED_0BB7


def initial_fitness(num_runs: int) -> np.ndarray:
    """No fitness known yet: -inf `[R]` (the ranking then falls back on the run index)."""
    return np.full(num_runs, -np.inf, np.float32)


def log_to_host(placement: Any, log: PBTLog, num_runs: int) -> PBTLog:
    """A chunk's log on the host (every process): its active steps, padding runs dropped."""
    host = placement.to_host(log)
    active = np.asarray(host.active, bool)

    def rows(leaf: Any) -> np.ndarray:
        leaf = np.asarray(leaf)[active]
        return leaf[:, :num_runs] if leaf.ndim == 2 else leaf

    return jax.tree.map(rows, host)


class PBTLog(NamedTuple):
    """What each exploit step did, `[S, R]` for S steps (`update`, `active`: `[S]`)."""

    update: Any  # int32: updates done when the step ran
    fitness: Any  # float32: the fitness the runs were ranked by (-inf: none yet)
    parents: Any  # int32
    replaced: Any  # bool
    hyperparams: Any  # Hyperparams of [S, R]: every run's values after the step
    active: Any  # bool: False for a step at the run's very end, which is skipped


def episode_fitness(metrics: Metrics) -> jax.Array:
    """Mean return of the episodes completed in these updates (`[U]` metrics of one run),
    weighted by their count; NaN if none completed."""
    counts = metrics.episodes.astype(jnp.float32)
    returns = jnp.where(counts > 0, metrics.episode_return, 0.0)
    total = jnp.sum(counts)
    return jnp.where(total > 0, jnp.sum(returns * counts) / jnp.maximum(total, 1.0), jnp.nan)


def run_segment(
    trainer: Trainer,
    pbt: PBTConfig,
    num_updates: int,
    state: TrainState,
    hp: Hyperparams,
    eval_key: jax.Array,
) -> tuple[TrainState, Metrics, jax.Array]:
    """One run's `num_updates` updates and its fitness after them (scalar, NaN: unknown)."""
    state, metrics = trainer.run_updates(hp, state, num_updates)
    if pbt.fitness == "return":
        return state, metrics, episode_fitness(metrics)
    policy = policy_of(trainer.config, state)
    result = evaluate_policy(trainer, policy, eval_key, pbt.eval_episodes, True)
    return state, metrics, mean_over_finished(result.returns, result.finished)


def step_key(seed: int, update: jax.Array) -> jax.Array:
    """The key of the PBT step after `update` updates."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), PBT_STREAM), update)


def pbt_chunk(
    trainer: Trainer,
    plan: PBTStrategy,
    num_runs: int,
    size: int,
    map_runs: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> Callable[..., Any]:
    """The population program of a chunk of `size` updates: `(state, hps, fitness) ->
    (state, hps, fitness, metrics [R, size], log)`, every leaf with the (padded) run axis
    first and `log` a `PBTLog` of `[S, R]` for the chunk's S = size // every steps.

    `map_runs` maps a per-run function over the run axis (the placement's). Each segment
    ends with `exploit_and_explore` of the first `num_runs` rows (padding rows continue
    themselves). A step that would fall on the last update is skipped (it could only change
    the final state)."""
    pbt, bounds, seed = plan.config, plan.bounds, plan.seed
    steps, tail = divmod(size, pbt.every)
    segment_runs = map_runs(
        lambda state, hp, key: run_segment(trainer, pbt, pbt.every, state, hp, key)
    )
    tail_runs = map_runs(lambda state, hp: trainer.run_updates(hp, state, tail))

    def segment(carry: tuple, _: Any) -> tuple[tuple, tuple[Metrics, PBTLog]]:
        state, hps, last_fitness = carry
        padded = last_fitness.shape[0]
        update = state.update[0] + pbt.every  # after this segment (every run in step)
        key_eval, key_step = jax.random.split(step_key(seed, update))
        state, metrics, fitness = segment_runs(state, hps, jnp.broadcast_to(key_eval, (padded,)))
        fitness = jnp.where(jnp.isnan(fitness), last_fitness, fitness)
        exploited = exploit_and_explore(pbt, bounds, fitness, state, hps, key_step, num_runs)
        active = update < trainer.config.num_updates
        kept = Exploited(state, hps, jnp.arange(padded, dtype=jnp.int32), jnp.zeros(padded, bool))
        state, hps, parents, replaced = jax.lax.cond(active, lambda: exploited, lambda: kept)
        log = PBTLog(update, fitness, parents, replaced, hps, active)
        return (state, hps, fitness[parents]), (metrics, log)

    def chunk(state: TrainState, hps: Hyperparams, fitness: jax.Array) -> tuple:
        (state, hps, fitness), (metrics, log) = jax.lax.scan(
            segment, (state, hps, fitness), None, steps
        )
        # [S, R, every] -> [R, S * every]
        metrics = jax.tree.map(lambda m: jnp.moveaxis(m, 0, 1).reshape(m.shape[1], -1), metrics)
        if tail:
            state, tail_metrics = tail_runs(state, hps)
            metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b], 1), metrics, tail_metrics)
        return state, hps, fitness, metrics, log

    return chunk


# --- checkpoints: PBT's carried values as a tree of numpy arrays ---------------------------


def pbt_tree(hyperparams: Hyperparams, fitness: np.ndarray, log: PBTLog | None) -> dict:
    """What a checkpoint stores of PBT (host values, `[R]` and `[S, R]`): the evolved
    hyperparameters, the last fitness, and the steps so far (left out while there are none)."""
    tree: dict[str, Any] = {
        "hyperparams": {k: np.asarray(v, np.float32) for k, v in hyperparams.to_dict().items()},
        "fitness": np.asarray(fitness, np.float32),
    }
    if log is not None and len(log.update):
        tree["log"] = log._asdict() | {"hyperparams": log.hyperparams.to_dict()}
    return tree


# The log's fields but its hyperparameters, their dtypes, and which are per step (`[S]`).
LOG_DTYPES = {
    "update": np.int32,
    "fitness": np.float32,
    "parents": np.int32,
    "replaced": np.bool_,
    "active": np.bool_,
}
PER_STEP_FIELDS = ("update", "active")


def abstract_pbt_tree(num_runs: int, steps: int) -> dict:
    """The shapes and dtypes `pbt_tree` gives for R runs after `steps` steps."""
    names = Hyperparams().to_dict()
    tree: dict[str, Any] = {
        "hyperparams": {name: jax.ShapeDtypeStruct((num_runs,), np.float32) for name in names},
        "fitness": jax.ShapeDtypeStruct((num_runs,), np.float32),
    }
    if steps:
        log = {
            field: jax.ShapeDtypeStruct(
                (steps,) if field in PER_STEP_FIELDS else (steps, num_runs), dtype
            )
            for field, dtype in LOG_DTYPES.items()
        }
        log["hyperparams"] = {
            name: jax.ShapeDtypeStruct((steps, num_runs), np.float32) for name in names
        }
        tree["log"] = log
    return tree


def pbt_from_tree(tree: dict) -> tuple[Hyperparams, np.ndarray, PBTLog | None]:
    """The inverse of `pbt_tree`."""
    hyperparams = Hyperparams(**{k: np.asarray(v) for k, v in tree["hyperparams"].items()})
    log = None
    if "log" in tree:
        fields = {k: np.asarray(v) for k, v in tree["log"].items() if k != "hyperparams"}
        logged = Hyperparams(**{k: np.asarray(v) for k, v in tree["log"]["hyperparams"].items()})
        log = PBTLog(**fields, hyperparams=logged)
    return hyperparams, np.asarray(tree["fitness"]), log


# --- the strategy --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PBTStrategy:
    """Population-based training as a `PopulationStrategy`: the carry is every run's last
    fitness `[R]`, the log a `PBTLog`, the checkpoint `pbt_tree`'s form."""

    config: PBTConfig
    bounds: tuple[tuple[str, float, float], ...]  # (name, low, high) of each searched name
    seed: int  # the PBT stream's seed (the population's first seed)

    def steps_done(self, updates_done: int, num_updates: int) -> int:
        """Exploit steps taken after `updates_done` updates (none at the very end)."""
        every = self.config.every
        return len(range(every, min(updates_done, num_updates - 1) + 1, every))

    def compile_chunk(
        self, trainer: Trainer, placement: Placement, num_runs: int, size: int, example_args: tuple
    ) -> tuple[ChunkCall, float]:
        fitness = place_runs(placement, initial_fitness(num_runs), num_runs)
        compiled = compile_program(
            pbt_chunk(trainer, self, num_runs, size, placement.map),
            (*example_args, fitness),
            donate_argnums=(0, 1, 2),
            compiler_options=trainer.tuning.compiler_options_dict(),
        )
        return compiled.program, compiled.compile_s

    def initial_carry(self, num_runs: int) -> np.ndarray:
        return initial_fitness(num_runs)

    def log_to_host(self, placement: Placement, log: PBTLog, num_runs: int) -> PBTLog:
        return log_to_host(placement, log, num_runs)

    def to_checkpoint(self, carried: Carried) -> dict:
        return pbt_tree(carried.hyperparams, carried.carry, carried.log)

    def abstract_checkpoint(self, num_runs: int, updates_done: int, num_updates: int) -> dict:
        return abstract_pbt_tree(num_runs, self.steps_done(updates_done, num_updates))

    def from_checkpoint(self, tree: dict | None) -> Carried | None:
        return None if tree is None else Carried(*pbt_from_tree(tree))


def pbt_strategy(config: PBTConfig, search: Mapping[str, SearchRange], seed: int) -> PBTStrategy:
    """The strategy of `config` over the searched names' ranges, its stream seeded by `seed`."""
    bounds = tuple((name, *bound) for name, bound in sorted(search_bounds(search).items()))
    return PBTStrategy(config, bounds, seed)
