"""What a training run is, as data: `RunSpec` (what is trained) and `LoopOptions` (how the
host loop runs it). Their one JSON document is `purejaxppo.runs.document`.

Every rule on seeds and sweeps lives here, checked when a `RunSpec` is made, without building
anything that grows with the population: `num_runs` is arithmetic.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

from purejaxppo.config import (
    HYPERPARAM_NAMES,
    Hyperparams,
    PPOConfig,
    is_int,
    validate_hyperparams,
)
from purejaxppo.errors import ConfigError
from purejaxppo.runs.changes import Changes, check_changes
from purejaxppo.runs.search import SearchRange, check_search
from purejaxppo.runs.strategy import Independent, PopulationShape, StrategySettings

MAX_SEED = 2**32 - 1
"""Seeds are 32-bit: `jax.random.key` takes a uint32."""


def check_sweep(name: str, values: tuple[float, ...], hp: Hyperparams) -> None:
    """A swept hyperparameter: traced (sweepable), at least one value, none repeated, each
    valid with the rest of `hp`."""
    if name not in HYPERPARAM_NAMES:
        raise ConfigError(
            f"cannot sweep {name!r}: it is static (changes shapes or control flow); "
            f"sweepable: {', '.join(HYPERPARAM_NAMES)}"
        )
    if not values:
        raise ConfigError(f"sweep {name} has no values")
    if len(set(values)) != len(values):
        raise ConfigError(f"sweep {name} repeats a value: {list(values)}")
    for value in values:
        validate_hyperparams(hp.replace(**{name: value}))


def check_population(
    hyperparams: Hyperparams,
    seed: int,
    num_seeds: int,
    sweep: Mapping[str, Any],
    search: Mapping[str, SearchRange],
) -> tuple[dict[str, tuple[float, ...]], dict[str, SearchRange]]:
    """The rules of a population's seeds, sweep and search, once for every way one is
    described (a `RunSpec`, `build_population`); the sweep's values as floats."""
    if not is_int(num_seeds) or num_seeds <= 0:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds!r}")
    if not is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED - (num_seeds - 1):
        last = seed + num_seeds - 1
        raise ConfigError(f"seeds {seed}..{last} must lie in 0..{MAX_SEED} (32-bit seeds)")
    validate_hyperparams(hyperparams)
    swept = {name: tuple(float(v) for v in values) for name, values in sweep.items()}
    for name, values in swept.items():
        check_sweep(name, values, hyperparams)
    for name, search_range in search.items():
        if name in swept:
            raise ConfigError(f"{name} is both swept and searched: drop one of them")
        check_search(name, search_range, hyperparams)
    for combo in itertools.product(*swept.values()):  # the swept values together
        validate_hyperparams(hyperparams.replace(**dict(zip(swept, combo, strict=True))))
    return swept, dict(search)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """R runs of one config: every combination of swept values x `num_seeds` seeds."""

    name: str
    """What the run is called (a preset or env name); it names the default output folder."""

    config: PPOConfig
    """Static settings, shared by every run."""

    hyperparams: Hyperparams = dataclasses.field(default_factory=Hyperparams)
    """Traced settings of every run, but for the swept ones."""

    seed: int = 0
    """First seed; the runs of each setting use `seed`, `seed + 1`, ..."""

    num_seeds: int = 1
    """Independent runs per swept setting."""

    sweep: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    """Swept hyperparameters and their values, a grid crossed with the seeds."""

    search: Mapping[str, SearchRange] = dataclasses.field(default_factory=dict)
    """Searched hyperparameters: seed index i of every swept setting draws its own value
    from each range (`purejaxppo.runs.search`)."""

    strategy: StrategySettings = dataclasses.field(default_factory=Independent)
    """How the runs relate between updates (`purejaxppo.runs.strategy`): independent (the
    default), or another strategy's settings (`purejaxppo.runs.strategies`)."""

    changes: Changes = ()
    """Hyperparameter changes during the run, `(from_update, {name: value})` in order, for
    every run (`purejaxppo.runs.changes`), such as a replayed lineage of an evolved run."""

    def __post_init__(self) -> None:
        sweep, search = check_population(
            self.hyperparams, self.seed, self.num_seeds, self.sweep, self.search
        )
        object.__setattr__(self, "sweep", sweep)
        object.__setattr__(self, "search", search)
        strategy = Independent() if self.strategy.independent else self.strategy
        strategy.check(
            PopulationShape(self.num_runs, self.config.num_updates, tuple(sweep), tuple(search))
        )
        object.__setattr__(self, "strategy", strategy)
        fixed = (*sweep, *search)
        changes = check_changes(self.changes, self.config.num_updates, self.hyperparams, fixed)
        object.__setattr__(self, "changes", changes)

    @property
    def num_runs(self) -> int:
        """Seeds times swept settings."""
        return self.num_seeds * math.prod(len(values) for values in self.sweep.values())


@dataclasses.dataclass(frozen=True)
class LoopOptions:
    """How the host loop runs a `RunSpec`: chunks, checkpoints, evaluation, logs, devices.
    None of it changes what is trained."""

    chunk_updates: int | None = None
    """Updates per compiled chunk (None: about a twentieth of the run)."""

    checkpoint_every: int = 10
    """Save a checkpoint every this many chunks, and always at the end (0: only at the end)."""

    eval_every: int = 0
    """Evaluate the deterministic policy every this many chunks (0: never)."""

    eval_episodes: int = 16
    """Episodes per run and evaluation."""

    tensorboard: bool = False
    """Also write TensorBoard logs (needs tensorboardX)."""

    render_every: int = 0
    """Every this many chunks, write a GIF of one deterministic episode of run 0 under
    `renders/` (and to TensorBoard and the tracker when on; 0: never)."""

    wandb_project: str | None = None
    """Also log to this Weights & Biases project, one tracker run per training run (needs
    wandb; `WANDB_MODE=offline` works without an account)."""

    wandb_group: str | None = None
    """The tracker group of this population's runs (None: the output directory's name)."""

    wandb_name: str | None = None
    """The prefix of the tracker runs' names, `<name>-run-<r>` (None: the output directory's
    name)."""

    progress: bool = True
    """Show a progress bar (process 0 only)."""

    devices: int | None = None
    """Shard the runs over the first this many devices (None: every device of every process)."""

    def __post_init__(self) -> None:
        for name, low in (
            ("chunk_updates", 1),
            ("checkpoint_every", 0),
            ("eval_every", 0),
            ("eval_episodes", 1),
            ("devices", 1),
            ("render_every", 0),
        ):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= low):
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("wandb_project", "wandb_group", "wandb_name"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise ConfigError(f"{name} must be a non-empty name, got {value!r}")
        for name in ("wandb_group", "wandb_name"):
            if getattr(self, name) is not None and self.wandb_project is None:
                raise ConfigError(f"{name} names tracker runs: it needs wandb_project")

    def replace(self, **changes: Any) -> LoopOptions:
        return dataclasses.replace(self, **changes)
