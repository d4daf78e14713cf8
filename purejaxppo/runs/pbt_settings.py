"""Population-based training's settings: `PBTConfig`, a `StrategySettings`
(`purejaxppo.runs.strategy`) that a run's description holds, checked when it is made. The
strategy itself is `purejaxppo.runs.pbt`; the replay of a PBT run's best lineage is
`purejaxppo.runs.pbt_replay`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from purejaxppo.config import is_int, is_number
from purejaxppo.errors import ConfigError
from purejaxppo.runs.strategy import PopulationShape

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

    document_key: ClassVar[str | None] = "pbt"

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

    @property
    def independent(self) -> bool:
        """`every = 0` turns population-based training off."""
        return not self.enabled

    def chunk_rule(self) -> tuple[int, str]:
        return self.every, f"pbt every = {self.every} (the exploit steps run inside the chunks)"

    def check(self, population: PopulationShape) -> None:
        """PBT evolves the searched hyperparameters of at least 2 runs, every so many updates."""
        if not self.enabled:
            return
        if not population.searched:
            raise ConfigError(
                f"pbt every = {self.every}: PBT evolves the searched hyperparameters; search at "
                "least one"
            )
        if population.swept:
            raise ConfigError(
                f"pbt every = {self.every}: PBT copies whole runs, so a swept grid would not "
                f"stay a grid: search {', '.join(population.swept)} instead of sweeping"
            )
        if self.replaced(population.num_runs) < 1:
            raise ConfigError(
                f"pbt fraction = {self.fraction:g} of {population.num_runs} runs replaces none: "
                f"train at least {math.ceil(1 / self.fraction)} runs"
            )
        if self.every >= population.num_updates:
            raise ConfigError(
                f"pbt every = {self.every} updates, but the run has {population.num_updates}: "
                "no exploit step would happen"
            )

    @classmethod
    def from_json(cls, values: Any) -> PBTConfig:
        """The settings of a run document's `pbt` object (missing fields: defaults)."""
        if not isinstance(values, dict):
            raise ConfigError("pbt must be an object of PBT settings")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown pbt field(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The keys of its object in a run document."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replaced(self, num_runs: int) -> int:
        """Runs replaced (and parents to draw from) at each step: `fraction` of `num_runs`."""
        return int(num_runs * self.fraction)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {
            "perturb": list(self.perturb)
        }
