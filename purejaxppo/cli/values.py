"""Values of the command line's flags, parsed and checked before anything is built: the
settings (`--preset` / `--env` / `--config`, `--set`, `--total-timesteps`, `--num-envs`),
sweeps, integer lists and output directories. Each error names the flag."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from purejaxppo.config import CONFIG_NAMES, HYPERPARAM_NAMES, PPOConfig
from purejaxppo.errors import ConfigError
from purejaxppo.presets import PRESETS
from purejaxppo.runs.document import read_run_document
from purejaxppo.runs.pbt_replay import replay_spec
from purejaxppo.runs.pbt_settings import PBTConfig
from purejaxppo.runs.search import SearchRange, parse_search_range
from purejaxppo.runs.spec import RunSpec


def parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None


def parse_value(name: str, text: str) -> Any:
    """`text` as a value of config field or hyperparameter `name`."""
    if name in HYPERPARAM_NAMES:
        return parse_float(name, text)
    default = next(f for f in dataclasses.fields(PPOConfig) if f.name == name).default
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, tuple):
            return tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
        return text
    except ValueError:
        raise ConfigError(f"cannot parse {text!r} as a value of {name}") from None


def split_assignment(item: str, flag: str) -> tuple[str, str]:
    """`NAME=VALUE` of `flag`, NAME a known setting."""
    name, sep, value = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ConfigError(f"{flag} takes NAME=VALUE, got {item!r}")
    if name not in CONFIG_NAMES and name not in HYPERPARAM_NAMES:
        known = ", ".join((*CONFIG_NAMES, *HYPERPARAM_NAMES))
        raise ConfigError(f"unknown setting {name!r} in {flag} (known: {known})")
    return name, value


def parse_int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes a comma list of integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{flag} takes positive integers, got {text!r}")
    return values


def object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once (json keeps the last of a repeated key
    silently, as `--set` would without its own check)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key(s) {', '.join(map(repr, repeated))} given twice in one object")
    return dict(pairs)


def source_spec(args: argparse.Namespace) -> RunSpec:
    """The run `--config` describes, or a preset's or env's defaults (one seed, no sweep)."""
    if args.config is not None:
        try:
            data = json.loads(args.config.read_text(), object_pairs_hook=object_without_repeats)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read config file {args.config}: {error}") from None
        return read_run_document(data, f"cannot read config file {args.config}")[0]
    if getattr(args, "replay_best", None) is not None:
        return replay_source(args.replay_best)
    if args.env is not None:
        return RunSpec(args.env, PPOConfig(env=args.env))
    name = args.preset or "cartpole"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    config, hp = PRESETS[name]
    return RunSpec(name, config, hp)


def replay_source(run_dir: Path) -> RunSpec:
    """The replay with fixed changes (`replay_spec`) of the best run of the PBT run in
    `run_dir`."""
    try:
        document = json.loads((run_dir / "config.json").read_text())
        best = json.loads((run_dir / "summary.json").read_text()).get("best")
    except (OSError, ValueError) as error:
        raise ConfigError(f"--replay-best {run_dir}: cannot read its run files: {error}") from None
    spec = read_run_document(document, f"--replay-best {run_dir}/config.json")[0]
    if not isinstance(spec.strategy, PBTConfig) or not best:
        raise ConfigError(f"--replay-best {run_dir}: not a finished PBT run (no best lineage)")
    return replay_spec(spec, best)


def with_settings(
    spec: RunSpec, items: list[str], total_timesteps: int | None, num_envs: int | None
) -> RunSpec:
    """`spec` with `--set` `items`, `--total-timesteps` and `--num-envs` applied (validated)."""
    config_changes: dict[str, Any] = {}
    hp_changes: dict[str, float] = {}
    for item in items:
        key, text = split_assignment(item, "--set")
        if key in config_changes or key in hp_changes:
            raise ConfigError(f"--set {key} is given twice: give each setting once")
        target = hp_changes if key in HYPERPARAM_NAMES else config_changes
        target[key] = parse_value(key, text)
    for flag, value in (("--total-timesteps", total_timesteps), ("--num-envs", num_envs)):
        field = flag[2:].replace("-", "_")
        if value is None:
            continue
        if value <= 0:  # named by its flag: the config's own check names the field
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
        if field in config_changes:
            raise ConfigError(f"{field} is given twice, by --set {field}=... and by {flag}")
        config_changes[field] = value
    config = spec.config.replace(**config_changes)  # validates
    hyperparams = spec.hyperparams.replace(**hp_changes)
    return dataclasses.replace(spec, config=config, hyperparams=hyperparams)


def parse_sweep(items: list[str]) -> dict[str, tuple[float, ...]]:
    """`--sweep NAME=V1,V2,...` flags, each name given once (the values are checked once,
    with the rest of the runs' description, by `RunSpec`)."""
    sweep: dict[str, tuple[float, ...]] = {}
    for item in items:
        key, text = split_assignment(item, "--sweep")
        values = tuple(parse_float(key, v) for v in text.split(",") if v.strip())
        if key in sweep:
            raise ConfigError(f"--sweep {key} is given twice: put all its values in one list")
        sweep[key] = values
    return sweep


def parse_search(items: list[str]) -> dict[str, SearchRange]:
    """`--search NAME=log:LOW:HIGH` / `NAME=uniform:LOW:HIGH` flags, each name given once
    (each range is checked once, with the rest of the runs' description, by `RunSpec`)."""
    search: dict[str, SearchRange] = {}
    for item in items:
        key, text = split_assignment(item, "--search")
        if key in search:
            raise ConfigError(f"--search {key} is given twice")
        search[key] = parse_search_range(key, text)
    return search


def given_pbt(args: argparse.Namespace, strategy: Any) -> PBTConfig:
    """The PBT settings of `strategy` (the config file's; defaults when it has none) with
    the `--pbt-*` flags given."""
    base = strategy if isinstance(strategy, PBTConfig) else PBTConfig()
    changes: dict[str, Any] = {}
    if args.pbt_every is not None:
        changes["every"] = args.pbt_every
    if args.pbt_fraction is not None:
        changes["fraction"] = args.pbt_fraction
    if args.pbt_perturb is not None:
        parts = args.pbt_perturb.split(",")
        if len(parts) != 2:
            raise ConfigError(f"--pbt-perturb takes LOW,HIGH, got {args.pbt_perturb!r}")
        changes["perturb"] = tuple(parse_float("--pbt-perturb", part) for part in parts)
    if args.pbt_fitness is not None:
        changes["fitness"] = args.pbt_fitness
    if args.eval_episodes is not None:
        changes["eval_episodes"] = args.eval_episodes
    return dataclasses.replace(base, **changes)


def prepare_output_dir(path: Path) -> None:
    """Create `path` and prove it is writable, before any compile."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot write to output directory {path}: {error.strerror}") from None


def output_file(out: str | Path | None, default: Path, name: str) -> Path:
    """The file an `--out` that takes a file or a directory means: `default` when it is not
    given; `OUT/name` when OUT ends in a slash (how a directory that does not exist yet is
    asked for) or is an existing directory; else OUT itself."""
    if out is None:
        return default
    text = str(out)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return Path(text) / name
    return Path(text)


def enable_compilation_cache(path: Path | None) -> None:
    """Persist compiled programs under `path` (every program, however fast it compiled)."""
    if path is None:
        return
    import jax

    prepare_output_dir(path)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
