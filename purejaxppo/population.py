"""Many independent runs in one compiled call: seeds x hyperparameter settings on a run axis."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from purejaxppo.compiling import (
    garbage_collection_paused,
    map_trainer_over_runs,
    trainer_compiler_options,
)
from purejaxppo.config import (
    HYPERPARAM_NAMES,
    ConfigError,
    Hyperparams,
    stack_hyperparams,
    validate_hyperparams,
)
from purejaxppo.memory import check_compiled_fits
from purejaxppo.train import Trainer, TrainOutput


@dataclasses.dataclass(frozen=True)
class Population:
    """R runs: run r trains with seed `seeds[r]` and hyperparameters `settings[r]`.

    `keys` `[R]` and `hyperparams` (fields `[R]`) are what `jax.vmap(train)` takes.
    `swept[r]` holds only the swept names and their values for run r.
    """

    seeds: tuple[int, ...]
    swept: tuple[dict[str, float], ...]
    keys: jax.Array
    hyperparams: Hyperparams

    @property
    def num_runs(self) -> int:
        return len(self.seeds)

    def groups(self) -> list[tuple[dict[str, float], list[int]]]:
        """Runs grouped by swept setting, in order: `[(setting, run indices)]`."""
        grouped: dict[tuple, list[int]] = {}
        for run, setting in enumerate(self.swept):
            grouped.setdefault(tuple(setting.items()), []).append(run)
        return [(dict(k), v) for k, v in grouped.items()]


def build_population(
    base: Hyperparams,
    seed: int = 0,
    num_seeds: int = 1,
    sweep: Mapping[str, Sequence[float]] | None = None,
) -> Population:
    """Every combination of swept values x `num_seeds` seeds (`seed`, `seed + 1`, ...).

    Each setting uses the same seeds, so settings are compared on common random numbers.
    """
    sweep = dict(sweep or {})
    if num_seeds < 1:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds}")
    for name, values in sweep.items():
        if name not in HYPERPARAM_NAMES:
            raise ConfigError(
                f"cannot sweep {name!r}: only traced hyperparameters can be swept in one "
                f"compiled call ({', '.join(HYPERPARAM_NAMES)})"
            )
        if not values:
            raise ConfigError(f"sweep over {name!r} has no values")
    validate_hyperparams(base)
    combos = [dict(zip(sweep, c, strict=True)) for c in itertools.product(*sweep.values())]
    settings, seeds, swept = [], [], []
    for combo in combos:
        setting = base.replace(**combo)
        validate_hyperparams(setting)
        for s in range(seed, seed + num_seeds):
            settings.append(setting)
            seeds.append(s)
            swept.append({k: float(v) for k, v in combo.items()})
    keys = jax.vmap(jax.random.key)(np.asarray(seeds, dtype=np.uint32))
    return Population(tuple(seeds), tuple(swept), keys, stack_hyperparams(settings))


@dataclasses.dataclass(frozen=True)
class Timing:
    compile_s: float
    run_s: float


def train_population(trainer: Trainer, population: Population) -> tuple[TrainOutput, Timing]:
    """Compile `jit(vmap(train))` for the population (`map_trainer_over_runs`), run it once,
    and time both apart."""
    train_runs = jax.jit(
        map_trainer_over_runs(trainer, trainer.config.batch_size),
        compiler_options=trainer_compiler_options(),
    )
    start = time.perf_counter()
    with garbage_collection_paused():
        compiled = train_runs.lower(population.keys, population.hyperparams).compile()
    compile_s = time.perf_counter() - start
    check_compiled_fits(compiled)
    start = time.perf_counter()
    output = jax.block_until_ready(compiled(population.keys, population.hyperparams))
    return output, Timing(compile_s, time.perf_counter() - start)


def final_returns(metrics: Any, fraction: float = 0.1) -> np.ndarray:
    """Per run `[R]`: mean return of the episodes completed in the last `fraction` of updates
    (weighted by episode count; NaN for a run with no completed episode there)."""
    returns = np.asarray(metrics.episode_return, dtype=np.float64)
    counts = np.asarray(metrics.episodes, dtype=np.float64)
    tail = max(1, int(np.ceil(returns.shape[-1] * fraction)))
    returns, counts = returns[..., -tail:], counts[..., -tail:]
    total = np.nansum(np.where(counts > 0, returns * counts, 0.0), axis=-1)
    n = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def first_nonfinite_update(metrics: Any) -> tuple[int, int] | None:
    """`(run, update)` where the loss first became NaN/inf (earliest update), or None."""
    loss = np.asarray(metrics.total_loss)
    if loss.size == 0:
        return None  # no update yet (a run stopped before its first chunk ended)
    bad = ~np.isfinite(loss.reshape(-1, loss.shape[-1]))
    if not bad.any():
        return None
    updates = np.where(bad.any(axis=1), bad.argmax(axis=1), np.iinfo(np.int64).max)
    run = int(updates.argmin())
    return run, int(updates[run])
