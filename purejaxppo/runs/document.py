"""A run's one JSON document: `run_document` writes a `RunSpec` and its `LoopOptions`,
`read_run_document` reads them back. It is both a run's `config.json` and its checkpoints'
metadata. A key no reader knows is refused, every one named at once, so that a misspelt
setting is not trained with its default."""

from __future__ import annotations

import dataclasses
from typing import Any

from purejaxppo.config import (
    CONFIG_NAMES,
    HYPERPARAM_NAMES,
    Hyperparams,
    PPOConfig,
    is_int,
    is_number,
)
from purejaxppo.errors import ConfigError
from purejaxppo.runs.search import SEARCH_RANGE_FIELDS, search_from_json
from purejaxppo.runs.spec import LoopOptions, RunSpec
from purejaxppo.runs.strategies import DOCUMENTED
from purejaxppo.runs.strategy import Independent, StrategySettings

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
        **strategy_document(spec.strategy),
        "changes": [[update, dict(values)] for update, values in spec.changes],
        "loop": {name: getattr(loop, name) for name in SAVED_LOOP_OPTIONS},
        **({"tuning": tuning.to_dict()} if tuning is not None else {}),
        **extra,
    }


def strategy_document(strategy: StrategySettings) -> dict[str, Any]:
    """The run document's object of `strategy`, under its key (none: independent runs)."""
    key = strategy.document_key
    return {} if key is None else {key: strategy.to_dict()}


def strategy_from_json(data: dict) -> StrategySettings:
    """The strategy a run document names (at most one; none: independent runs)."""
    named = [kind for kind in DOCUMENTED if kind.document_key in data]
    if len(named) > 1:
        keys = ", ".join(str(kind.document_key) for kind in named)
        raise ConfigError(f"a run has one strategy: the document gives {keys}")
    return named[0].from_json(data[named[0].document_key]) if named else Independent()


DOCUMENT_FIELDS = (
    "name", "env", "config", "hyperparams", "seed", "num_seeds", "sweep", "search", "changes",
    "loop", "tuning", *(kind.document_key for kind in DOCUMENTED),
)  # fmt: skip
"""The top-level keys `run_document` writes for a run (`tuning` is recorded, not read back;
a strategy's key only when the run has that strategy)."""

OLDER_NAMES = {"schedule": "changes"}
"""Keys that documents written by earlier versions use, and the key each now is."""

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
        data = {OLDER_NAMES.get(key, key): value for key, value in data.items()}
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
            strategy=strategy_from_json(data),
            changes=tuple(list_field(data, "changes")),
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
    level, `config`, `hyperparams`, `loop`, a strategy's object, the names of `sweep`,
    `search` and `changes` entries, and the fields of each `search` range. Parts of the
    wrong kind are left to their readers, whose messages say what they must be."""
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
    **{str(kind.document_key): kind.field_names() for kind in DOCUMENTED},
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
    """Complaints about names in `sweep`, `search` and `changes` that are no setting at
    all (a static one has its own message), and about fields of a `search` range."""
    settings = (*CONFIG_NAMES, *HYPERPARAM_NAMES)
    parts = [(part, data.get(part)) for part in ("sweep", "search")]
    changes = data.get("changes")
    for entry in changes if isinstance(changes, list) else ():
        if isinstance(entry, list) and len(entry) == 2:
            parts.append((f"change at update {entry[0]!r}", entry[1]))
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
