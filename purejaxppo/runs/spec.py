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

from purejaxppo.config import (
    CONFIG_NAMES,
    HYPERPARAM_NAMES,
    Hyperparams,
    PPOConfig,
    is_int,
    is_number,
    validate_hyperparams,
)
from purejaxppo.errors import ConfigError
from purejaxppo.runs.pbt_spec import (
    PBT_FIELDS,
    PBTConfig,
    check_pbt,
    check_schedule,
    pbt_from_json,
)
from purejaxppo.runs.search import (
    SEARCH_RANGE_FIELDS,
    SearchRange,
    check_search,
    search_from_json,
)

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
        if not is_int(self.num_seeds) or self.num_seeds <= 0:
            raise ConfigError(f"num_seeds must be a positive integer, got {self.num_seeds!r}")
        if not is_int(self.seed):
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


# What a run's document keeps of its loop options (the rest belongs to the machine).
SAVED_LOOP_OPTIONS = (
    "chunk_updates",
    "checkpoint_every",
    "eval_every",
    "eval_episodes",
    "tensorboard",
    "render_every",
    "wandb_project",
    "wandb_group",
    "wandb_name",
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


DOCUMENT_FIELDS = (
    "name", "env", "config", "hyperparams", "seed", "num_seeds", "sweep", "search", "pbt",
    "schedule", "loop", "tuning",
)  # fmt: skip
"""The top-level keys `run_document` writes for a run (`tuning` is recorded, not read back)."""

DOCUMENT_EXTRA_KEYS = ("format", "updates_done", "evaluations", "argv", "exported_run")
"""The keys the writers of a run's document add beside its fields (`run_document`'s `extra`:
a checkpoint's format, updates done and evaluations; config.json's argv; an export's run).
They are not settings, so `read_run_document` accepts them and reads nothing from them; any
other key is refused, so that a misspelt setting is not trained with its default."""


def read_run_document(data: Any, where: str) -> tuple[RunSpec, LoopOptions]:
    """The inverse of `run_document`. Fields a document leaves out take their defaults; an
    unknown key (anywhere: every one is named at once), or a value of the wrong kind, is a
    ConfigError prefixed with `where`."""
    try:
        if not isinstance(data, dict):
            raise ConfigError("a run document is a JSON object")
        complaints = unknown_keys(data)
        if complaints:
            raise ConfigError("; ".join(complaints))
        config = config_from_json(data.get("config", {}))
        hp = hyperparams_from_json(data.get("hyperparams", {}))
        for name in ("seed", "num_seeds"):
            if name in data and not is_int(data[name]):
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
        if not isinstance(loop, dict):
            raise ConfigError(f"loop must be an object of {', '.join(SAVED_LOOP_OPTIONS)}")
        return spec, LoopOptions(**loop)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def quoted(names: Any) -> str:
    """`'a', 'b'`: names quoted, so that a stray space or an empty name shows."""
    return ", ".join(repr(str(name)) for name in names)


def unknown_keys(data: dict) -> list[str]:
    """One complaint per part of the document that holds keys no reader knows: the top
    level, `config`, `hyperparams`, `loop`, `pbt`, the names of `sweep`, `search` and
    `schedule` entries, and the fields of each `search` range. Parts of the wrong kind are
    left to their readers, whose messages say what they must be."""
    known = (*DOCUMENT_FIELDS, *DOCUMENT_EXTRA_KEYS)
    top = _unknown_in(data, known)
    complaints = [f"unknown key(s) {quoted(top)} (known: {', '.join(known)})"] if top else []
    for part, names in SECTION_KEYS.items():
        unknown = _unknown_in(data.get(part), names)
        if unknown:
            complaints.append(section_complaint(part, unknown))
    return complaints + unknown_setting_names(data)


SECTION_KEYS = {
    "config": CONFIG_NAMES,
    "hyperparams": HYPERPARAM_NAMES,
    "loop": SAVED_LOOP_OPTIONS,
    "pbt": PBT_FIELDS,
}
"""The keys of each object of settings in a run document."""


def section_complaint(part: str, unknown: list[str]) -> str:
    """What is wrong with the `unknown` keys of section `part` of a run document."""
    if part == "hyperparams":
        word = "hyperparameter" if len(unknown) == 1 else "hyperparameters"
        return f"hyperparams: unknown {word} {quoted(unknown)}"
    if part == "loop":
        return (
            f"loop must be an object of {', '.join(SAVED_LOOP_OPTIONS)}: unknown {quoted(unknown)}"
        )
    return f"unknown {part} field(s) {', '.join(unknown)}"


def unknown_setting_names(data: dict) -> list[str]:
    """Complaints about names in `sweep`, `search` and `schedule` that are no setting at
    all (a static one has its own message), and about fields of a `search` range."""
    settings = (*CONFIG_NAMES, *HYPERPARAM_NAMES)
    parts = [(part, data.get(part)) for part in ("sweep", "search")]
    schedule = data.get("schedule")
    for entry in schedule if isinstance(schedule, list) else ():
        if isinstance(entry, list) and len(entry) == 2:
            parts.append((f"schedule at update {entry[0]!r}", entry[1]))
    complaints = [
        f"{part}: unknown hyperparameter(s) {quoted(names)}"
        for part, values in parts
        if (names := _unknown_in(values, settings))
    ]
    search = data.get("search")
    for name, search_range in search.items() if isinstance(search, dict) else ():
        fields = _unknown_in(search_range, SEARCH_RANGE_FIELDS)
        if fields:
            known = ", ".join(SEARCH_RANGE_FIELDS)
            complaints.append(f"search {name}: unknown key(s) {quoted(fields)} (known: {known})")
    return complaints


def _unknown_in(values: Any, known: tuple[str, ...]) -> list[str]:
    """The keys of `values` not in `known`, sorted (none if `values` is not an object)."""
    return sorted(set(values) - set(known)) if isinstance(values, dict) else []


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
        if not is_number(value):
            raise ConfigError(f"hyperparams: {name} must be a number, got {value!r}")
    return Hyperparams(**values)


def sweep_from_json(sweep: Any) -> dict[str, tuple[float, ...]]:
    valid = isinstance(sweep, dict) and all(
        isinstance(v, list) and v and all(is_number(x) for x in v) for v in sweep.values()
    )
    if not valid:
        raise ConfigError("sweep must map names to lists of numbers")
    return {name: tuple(float(v) for v in values) for name, values in sweep.items()}
