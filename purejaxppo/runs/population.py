"""Many independent runs in one compiled call: seeds x hyperparameter settings on a run axis."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from purejaxppo.config import ConfigError, Hyperparams, stack_hyperparams, validate_hyperparams
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import TrainOutput
from purejaxppo.runs.compile import compile_trainer_program
from purejaxppo.runs.placement import (
    LOCAL_RUNS,
    MeshRuns,
    Placement,
    place_runs,
    run_mesh,
    runs_to_host,
)
from purejaxppo.runs.search import SearchRange, check_search, draw_search
from purejaxppo.runs.spec import check_sweep


@dataclasses.dataclass(frozen=True)
class Population:
    """R runs: run r trains with seed `seeds[r]` and hyperparameters `settings[r]`.

    `keys` `[R]` and `hyperparams` (fields `[R]`) are what `jax.vmap(train)` takes.
    `swept[r]` holds only the swept names and their values for run r; `searched[r]` its
    drawn values of the searched names (at the start, before any PBT step).
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
        """Run `run`'s hyperparameters by name, from `hyperparams` (fields `[R]`, e.g. PBT's
        evolved ones; default the population's start values), as the decimals float32 holds
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
    (`draw_search`).

    Each setting uses the same seeds and searched values, so settings are compared on common
    random numbers.
    """
    sweep = {name: tuple(values) for name, values in (sweep or {}).items()}
    search = dict(search or {})
    if num_seeds < 1:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds}")
    validate_hyperparams(base)
    for name, values in sweep.items():
        check_sweep(name, values, base)
    for name, search_range in search.items():
        check_search(name, search_range, base)
    drawn = draw_search(search, seed, num_seeds)
    combos = [dict(zip(sweep, c, strict=True)) for c in itertools.product(*sweep.values())]
    settings, seeds, swept, searched = [], [], [], []
    for combo in combos:
        setting = base.replace(**combo)
        validate_hyperparams(setting)
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
    """Compile the whole training of every run of `population` for `placement`
    (`compile_trainer_program`), run it once, and time both apart. On one device the output stays
    there; over a mesh it comes back to the host (numpy, padding dropped, keys as key data,
    the full output on every process)."""
    num_runs = population.num_runs
    args = place_runs(placement, (population.keys, population.hyperparams), num_runs)
    compiled = compile_trainer_program(trainer, trainer, args, placement)
    start = time.perf_counter()
    output = jax.block_until_ready(compiled.program(*args))
    timing = Timing(compiled.compile_s, time.perf_counter() - start)
    if placement is not LOCAL_RUNS:
        output = runs_to_host(placement, output, num_runs)
    return output, timing


def train_sharded(
    trainer: Trainer, population: Population, mesh: Mesh | None = None
) -> TrainOutput:
    """`train_population` over `mesh` (default: every device of every process); the host
    (numpy) output `[R, ...]`, `state.key` as key data."""
    return train_population(trainer, population, MeshRuns(run_mesh() if mesh is None else mesh))[0]
