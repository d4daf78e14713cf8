"""Population-based training and scheduled hyperparameters as data: `PBTConfig` (part of a
`RunSpec`), the checks a spec's PBT and schedule must pass, and the replay of a PBT run's best
schedule as a fixed-schedule run (`replay_spec`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from purejaxppo.config import HYPERPARAM_NAMES, is_int, is_number, validate_hyperparams
from purejaxppo.errors import ConfigError

if TYPE_CHECKING:
    from purejaxppo.runs.spec import RunSpec

PBT_FITNESS = ("return", "eval")


@dataclasses.dataclass(frozen=True)
class PBTConfig:
    """Population-based training: every `every` updates the runs are ranked by a fitness, and
    each run of the bottom `fraction` takes the parameters, optimizer state, normalisation
    statistics and hyperparameters of a run drawn from the top `fraction`, its searched
    hyperparameters then multiplied by one of the `perturb` factors (clipped to the search
    range). Its envs and random stream stay its own."""

    every: int = 0
    """Updates between exploit steps (0: no population-based training)."""

    fraction: float = 0.25
    """Share of the runs replaced at each step (the bottom), and the share copied (the top)."""

    perturb: tuple[float, float] = (0.8, 1.25)
    """The two factors a copied searched hyperparameter is multiplied by, one drawn at random."""

    fitness: str = "return"
    """What ranks the runs: `return` (mean completed-episode return since the last step) or
    `eval` (mean return of `eval_episodes` deterministic episodes at the step)."""

    eval_episodes: int = 16
    """Episodes per run of the `eval` fitness."""

    def __post_init__(self) -> None:
        if not is_int(self.every) or self.every < 0:
            raise ConfigError(f"pbt every must be an integer >= 0, got {self.every!r}")
        if not is_number(self.fraction) or not 0 < self.fraction <= 0.5:
            raise ConfigError(f"pbt fraction must lie in (0, 0.5], got {self.fraction!r}")
        perturb = tuple(self.perturb)
        if len(perturb) != 2 or not all(is_number(f) and f > 0 for f in perturb):
            raise ConfigError(f"pbt perturb must be two positive factors, got {self.perturb!r}")
        object.__setattr__(self, "perturb", (float(perturb[0]), float(perturb[1])))
        if self.fitness not in PBT_FITNESS:
            raise ConfigError(
                f"pbt fitness must be one of {', '.join(PBT_FITNESS)}, got {self.fitness!r}"
            )
        if not is_int(self.eval_episodes) or self.eval_episodes < 1:
            raise ConfigError(
                f"pbt eval_episodes must be an integer >= 1, got {self.eval_episodes!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def replaced(self, num_runs: int) -> int:
        """Runs replaced (and parents to draw from) at each step: `fraction` of `num_runs`."""
        return int(num_runs * self.fraction)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {
            "perturb": list(self.perturb)
        }


PBT_FIELDS = tuple(f.name for f in dataclasses.fields(PBTConfig))
"""The keys of a run document's `pbt` object."""


def pbt_from_json(values: Any) -> PBTConfig:
    if not isinstance(values, dict):
        raise ConfigError("pbt must be an object of PBT settings")
    unknown = sorted(set(values) - set(PBT_FIELDS))
    if unknown:
        raise ConfigError(f"unknown pbt field(s) {', '.join(unknown)}")
    return PBTConfig(**values)


def check_schedule(schedule: Any, spec: RunSpec) -> tuple[tuple[int, dict[str, float]], ...]:
    """A schedule of increasing update counts inside the run, each with valid values of
    traced hyperparameters that are neither swept nor searched."""
    checked, last = [], 0
    for entry in schedule:
        if not (isinstance(entry, list | tuple) and len(entry) == 2):
            raise ConfigError(f"schedule entries are (from_update, {{name: value}}), got {entry!r}")
        update, values = entry
        if not is_int(update) or not last < update < spec.config.num_updates:
            raise ConfigError(
                f"schedule update {update!r} must be an integer after {last} and before the "
                f"run's {spec.config.num_updates} updates"
            )
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"schedule at update {update}: give {{name: value}}")
        for name, value in values.items():
            if name not in HYPERPARAM_NAMES or name in spec.sweep or name in spec.search:
                raise ConfigError(
                    f"schedule at update {update}: {name!r} is not a traced hyperparameter "
                    "left to schedule (swept and searched ones are not)"
                )
            if not is_number(value):
                raise ConfigError(f"schedule at update {update}: {name} must be a number")
            validate_hyperparams(spec.hyperparams.replace(**{name: value}))
        checked.append((update, {name: float(v) for name, v in values.items()}))
        last = update
    return tuple(checked)


def scheduled_hyperparams(spec: RunSpec, updates_done: int) -> dict[str, float]:
    """The scheduled values in force from `updates_done` on (empty before the first)."""
    values: dict[str, float] = {}
    for update, changes in spec.schedule:
        if update <= updates_done:
            values |= changes
    return values


def replay_spec(spec: RunSpec, best: Mapping[str, Any]) -> RunSpec:
    """One fresh run that replays the best run of PBT run `spec` as a fixed schedule: its
    lineage's searched values from the start, changed at each PBT step as the lineage's
    were (`best` is `summary.json`'s `best`), with the best run's seed; no search, no PBT.
    The replay trains its own parameters throughout, so its return tells whether the
    schedule or the inherited parameters made the best run."""
    if "schedule" not in best:
        raise ConfigError("the run has no PBT schedule to replay (its best run has no lineage)")
    names = list(spec.search)
    first, *later = best["schedule"]
    changes = tuple((entry["from_update"], {n: entry[n] for n in names}) for entry in later)
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-replay",
        hyperparams=spec.hyperparams.replace(**{n: first[n] for n in names}),
        seed=best["seed"],
        num_seeds=1,
        search={},
        pbt=PBTConfig(),
        schedule=changes,
    )


def check_pbt(pbt: PBTConfig, spec: RunSpec) -> None:
    """PBT evolves the searched hyperparameters of at least 2 runs, every so many updates."""
    if not pbt.enabled:
        return
    if not spec.search:
        raise ConfigError(
            f"pbt every = {pbt.every}: PBT evolves the searched hyperparameters; search at "
            "least one"
        )
    if spec.sweep:
        raise ConfigError(
            f"pbt every = {pbt.every}: PBT copies whole runs, so a swept grid would not stay "
            f"a grid: search {', '.join(spec.sweep)} instead of sweeping"
        )
    if pbt.replaced(spec.num_runs) < 1:
        raise ConfigError(
            f"pbt fraction = {pbt.fraction:g} of {spec.num_runs} runs replaces none: "
            f"train at least {math.ceil(1 / pbt.fraction)} runs"
        )
    if pbt.every >= spec.config.num_updates:
        raise ConfigError(
            f"pbt every = {pbt.every} updates, but the run has {spec.config.num_updates}: "
            "no exploit step would happen"
        )
