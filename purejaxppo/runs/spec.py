"""What a training run is, as data: `RunSpec` (what is trained) and `LoopOptions` (how the
host loop runs it), and their one JSON document (`run_document` / `read_run_document`),
which is both a run's `config.json` and its checkpoints' metadata.

Every rule on seeds and sweeps lives here, checked when a `RunSpec` is made, without building
anything that grows with the population: `num_runs` is arithmetic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from purejaxppo.config import HYPERPARAM_NAMES, Hyperparams, PPOConfig, validate_hyperparams
from purejaxppo.errors import ConfigError
from purejaxppo.runs.search import SearchRange, check_search, search_from_json

PBT_FITNESS = ("return", "eval")

MAX_SEED = 2**32 - 1
"""Seeds are 32-bit: `jax.random.key` takes a uint32."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
        if not _is_int(self.every) or self.every < 0:
            raise ConfigError(f"pbt every must be an integer >= 0, got {self.every!r}")
        if not _is_number(self.fraction) or not 0 < self.fraction <= 0.5:
            raise ConfigError(f"pbt fraction must lie in (0, 0.5], got {self.fraction!r}")
        perturb = tuple(self.perturb)
        if len(perturb) != 2 or not all(_is_number(f) and f > 0 for f in perturb):
            raise ConfigError(f"pbt perturb must be two positive factors, got {self.perturb!r}")
        object.__setattr__(self, "perturb", (float(perturb[0]), float(perturb[1])))
        if self.fitness not in PBT_FITNESS:
            raise ConfigError(
                f"pbt fitness must be one of {', '.join(PBT_FITNESS)}, got {self.fitness!r}"
            )
        if not _is_int(self.eval_episodes) or self.eval_episodes < 1:
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


def pbt_from_json(values: Any) -> PBTConfig:
    if not isinstance(values, dict):
        raise ConfigError("pbt must be an object of PBT settings")
    names = {f.name for f in dataclasses.fields(PBTConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown pbt field(s) {', '.join(unknown)}")
    return PBTConfig(**values)


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

    pbt: PBTConfig = dataclasses.field(default_factory=PBTConfig)
    """Population-based training over the searched hyperparameters (off by default)."""

    schedule: tuple[tuple[int, Mapping[str, float]], ...] = ()
    """Hyperparameter changes during the run, `(from_update, {name: value})` in order, for
    every run (a PBT run's best schedule, replayed: `replay_spec`)."""

    def __post_init__(self) -> None:
        if not _is_int(self.num_seeds) or self.num_seeds <= 0:
            raise ConfigError(f"num_seeds must be a positive integer, got {self.num_seeds!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED - (self.num_seeds - 1):
            last = self.seed + self.num_seeds - 1
            raise ConfigError(f"seeds {self.seed}..{last} must lie in 0..{MAX_SEED} (32-bit seeds)")
        validate_hyperparams(self.hyperparams)
        sweep = {name: tuple(float(v) for v in values) for name, values in self.sweep.items()}
        for name, values in sweep.items():
            check_sweep(name, values, self.hyperparams)
        object.__setattr__(self, "sweep", sweep)
        search = dict(self.search)
        for name, search_range in search.items():
            if name in sweep:
                raise ConfigError(f"{name} is both swept and searched: drop one of them")
            check_search(name, search_range, self.hyperparams)
        object.__setattr__(self, "search", search)
        check_pbt(self.pbt, self)
        object.__setattr__(self, "schedule", check_schedule(self.schedule, self))

    @property
    def num_runs(self) -> int:
        """Seeds times swept settings."""
        return self.num_seeds * math.prod(len(values) for values in self.sweep.values())

    def population(self) -> Any:
        """The `Population` of these runs (keys and `[R]` hyperparameters)."""
        from purejaxppo.runs.population import build_population

        return build_population(
            self.hyperparams, self.seed, self.num_seeds, self.sweep, self.search
        )


def check_schedule(schedule: Any, spec: RunSpec) -> tuple[tuple[int, dict[str, float]], ...]:
    """A schedule of increasing update counts inside the run, each with valid values of
    traced hyperparameters that are neither swept nor searched."""
    checked, last = [], 0
    for entry in schedule:
        if not (isinstance(entry, list | tuple) and len(entry) == 2):
            raise ConfigError(f"schedule entries are (from_update, {{name: value}}), got {entry!r}")
        update, values = entry
        if not _is_int(update) or not last < update < spec.config.num_updates:
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
            if not _is_number(value):
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
        ):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= low):
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")

    def replace(self, **changes: Any) -> LoopOptions:
        return dataclasses.replace(self, **changes)


# What a run's document keeps of its loop options (the rest belongs to the machine).
SAVED_LOOP_OPTIONS = (
    "chunk_updates",
    "checkpoint_every",
    "eval_every",
    "eval_episodes",
    "tensorboard",
)


def run_document(
    spec: RunSpec, loop: LoopOptions, tuning: Any = None, **extra: Any
) -> dict[str, Any]:
    """The JSON document of a run: `config.json`, and every checkpoint's metadata (with
    `updates_done` and `evaluations` in `extra`). `tuning` is recorded, not read back: it
    follows the backend."""
    return {
        "name": spec.name,
        "env": spec.config.env,
        "config": spec.config.to_dict(),
        "hyperparams": {k: float(v) for k, v in spec.hyperparams.to_dict().items()},
        "seed": spec.seed,
        "num_seeds": spec.num_seeds,
        "sweep": {name: list(values) for name, values in spec.sweep.items()},
        "search": {name: r.to_dict() for name, r in spec.search.items()},
        "pbt": spec.pbt.to_dict(),
        "schedule": [[update, dict(values)] for update, values in spec.schedule],
        "loop": {name: getattr(loop, name) for name in SAVED_LOOP_OPTIONS},
        **({"tuning": tuning.to_dict()} if tuning is not None else {}),
        **extra,
    }


def read_run_document(data: Any, where: str) -> tuple[RunSpec, LoopOptions]:
    """The inverse of `run_document`. Fields a document leaves out take their defaults; an
    unknown field, or a value of the wrong kind, is a ConfigError prefixed with `where`."""
    try:
        if not isinstance(data, dict):
            raise ConfigError("a run document is a JSON object")
        config = config_from_json(data.get("config", {}))
        hp = hyperparams_from_json(data.get("hyperparams", {}))
        for name in ("seed", "num_seeds"):
            if name in data and not _is_int(data[name]):
                raise ConfigError(f"{name} must be an integer, got {data[name]!r}")
        spec = RunSpec(
            name=str(data.get("name", config.env)),
            config=config,
            hyperparams=hp,
            seed=data.get("seed", 0),
            num_seeds=data.get("num_seeds", 1),
            sweep=sweep_from_json(data.get("sweep", {})),
            search=search_from_json(data.get("search", {})),
            pbt=pbt_from_json(data.get("pbt", {})),
            schedule=tuple(list_field(data, "schedule")),
        )
        loop = data.get("loop", {})
        if not isinstance(loop, dict) or set(loop) - set(SAVED_LOOP_OPTIONS):
            raise ConfigError(f"loop must be an object of {', '.join(SAVED_LOOP_OPTIONS)}")
        return spec, LoopOptions(**loop)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def list_field(data: dict, name: str) -> list:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    return value


def config_from_json(values: Any) -> PPOConfig:
    """A `PPOConfig` from a JSON object; missing fields take their defaults."""
    if not isinstance(values, dict):
        raise ConfigError("config must be an object of config fields")
    fields = {f.name: f for f in dataclasses.fields(PPOConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)}")
    changes = dict(values)
    for name, value in values.items():
        if isinstance(fields[name].default, tuple):
            if not isinstance(value, list | tuple):
                raise ConfigError(f"config: {name} must be a list, got {value!r}")
            changes[name] = tuple(value)
    return PPOConfig(**changes)


def hyperparams_from_json(values: Any) -> Hyperparams:
    """`Hyperparams` of one run from a JSON object of numbers; anything else, a list or
    `true` say, is a ConfigError (`Hyperparams` itself also takes `[R]` arrays)."""
    if not isinstance(values, dict):
        raise ConfigError("hyperparams must be an object of numbers")
    for name, value in values.items():
        if name not in HYPERPARAM_NAMES:
            raise ConfigError(f"hyperparams: unknown hyperparameter {name!r}")
        if not _is_number(value):
            raise ConfigError(f"hyperparams: {name} must be a number, got {value!r}")
    return Hyperparams(**values)


def sweep_from_json(sweep: Any) -> dict[str, tuple[float, ...]]:
    valid = isinstance(sweep, dict) and all(
        isinstance(v, list) and v and all(_is_number(x) for x in v) for v in sweep.values()
    )
    if not valid:
        raise ConfigError("sweep must map names to lists of numbers")
    return {name: tuple(float(v) for v in values) for name, values in sweep.items()}
