"""Many independent runs in one compiled call: seeds x hyperparameter settings on a run axis."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from purejaxppo.config import Hyperparams, stack_hyperparams
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import TrainOutput
from purejaxppo.runs.compile import compile_program, trainer_program
from purejaxppo.runs.placement import LOCAL_RUNS, Placement, place_runs, runs_to_host
from purejaxppo.runs.search import SearchRange, draw_search
from purejaxppo.runs.spec import RunSpec, check_population


@dataclasses.dataclass(frozen=True)
class Population:
    """R runs: run r trains with seed `seeds[r]` and hyperparameters `settings[r]`.

    `keys` `[R]` and `hyperparams` (fields `[R]`) are what `jax.vmap(train)` takes.
    `swept[r]` holds only the swept names and their values for run r; `searched[r]` its
    drawn values of the searched names (at the start, before a strategy changes them).
    """

    seeds: tuple[int, ...]
    swept: tuple[dict[str, float], ...]
    keys: jax.Array
    hyperparams: Hyperparams
    searched: tuple[dict[str, float], ...] = ()
    """Per run, its drawn value of each searched name (empty dicts without a search)."""

    @property
    def num_runs(self) -> int:
        return len(self.seeds)

    def run_hyperparams(self, run: int, hyperparams: Hyperparams | None = None) -> dict:
        """Run `run`'s hyperparameters by name, from `hyperparams` (fields `[R]`, e.g. those a
        strategy evolved; default the population's start values), as the decimals float32 holds
        (2.5e-4, not 2.5000001e-4)."""
        values = self.hyperparams if hyperparams is None else hyperparams
        return {
            field.name: float(
                f"{np.broadcast_to(getattr(values, field.name), (self.num_runs,))[run]:.7g}"
            )
            for field in dataclasses.fields(values)
        }

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
    search: Mapping[str, SearchRange] | None = None,
) -> Population:
    """Every combination of swept values x `num_seeds` seeds (`seed`, `seed + 1`, ...); with
    a `search`, seed index i of every setting draws its own value of each searched name
    (`draw_search`). The rules of a run's description (`check_population`) are checked
    first, as a `RunSpec` checks them.

    Each setting uses the same seeds and searched values, so settings are compared on common
    random numbers.
    """
    swept, searched = check_population(base, seed, num_seeds, sweep or {}, search or {})
    return draw_population(base, seed, num_seeds, swept, searched)


def population_of(spec: RunSpec) -> Population:
    """The `Population` of a run's description (checked when it was made)."""
    return draw_population(spec.hyperparams, spec.seed, spec.num_seeds, spec.sweep, spec.search)


def draw_population(
    base: Hyperparams,
    seed: int,
    num_seeds: int,
    sweep: Mapping[str, tuple[float, ...]],
    search: Mapping[str, SearchRange],
) -> Population:
    """`build_population` of checked values."""
    drawn = draw_search(search, seed, num_seeds)
    combos = [dict(zip(sweep, c, strict=True)) for c in itertools.product(*sweep.values())]
    settings, seeds, swept, searched = [], [], [], []
    for combo in combos:
        setting = base.replace(**combo)
        for index in range(num_seeds):
            values = {name: float(drawn[name][index]) for name in search}
            settings.append(setting.replace(**values))
            seeds.append(seed + index)
            swept.append({k: float(v) for k, v in combo.items()})
            searched.append(values)
    keys = jax.vmap(jax.random.key)(np.asarray(seeds, dtype=np.uint32))
    return Population(
        tuple(seeds), tuple(swept), keys, stack_hyperparams(settings), tuple(searched)
    )


@dataclasses.dataclass(frozen=True)
class Timing:
    compile_s: float
    run_s: float


def train_population(
    trainer: Trainer, population: Population, placement: Placement = LOCAL_RUNS
) -> tuple[TrainOutput, Timing]:
    """The one call that trains a population: the whole training of every run compiled for
    `placement` (all runs on the default device, or `make_placement()`'s mesh of every
    device of every process), run once, compile and run timed apart. On one device the
    output stays there; over a mesh it comes back to the host (numpy, padding dropped, keys
    as key data, the full output on every process)."""
    num_runs = population.num_runs
    args = place_runs(placement, (population.keys, population.hyperparams), num_runs)
    compiled = compile_program(
        trainer_program(trainer, trainer, placement),
        args,
        compiler_options=trainer.tuning.compiler_options_dict(),
    )
    start = time.perf_counter()
    output = jax.block_until_ready(compiled.program(*args))
    timing = Timing(compiled.compile_s, time.perf_counter() - start)
    if placement is not LOCAL_RUNS:
        output = runs_to_host(placement, output, num_runs)
    return output, timing
