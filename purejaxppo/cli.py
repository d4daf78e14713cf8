"""Command line: `purejaxppo train ...` (also `python -m purejaxppo`).

Every check on the input runs before anything is compiled; a bad input prints one line,
`purejaxppo: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from purejaxppo.config import (
    CONFIG_NAMES,
    HYPERPARAM_NAMES,
    ConfigError,
    Hyperparams,
    PPOConfig,
    validate_hyperparams,
)
from purejaxppo.presets import PRESETS

EXIT_USAGE = 2
EXIT_NAN = 3
MAX_SEED = 2**32 - 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) via ConfigError."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: cartpole)")
    source.add_argument("--env", help="a registered gymnax environment name")
    source.add_argument("--config", type=Path, help="a config.json written by an earlier run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any config field or hyperparameter, e.g. --set learning_rate=3e-4",
    )
    parser.add_argument("--total-timesteps", type=int, help="env steps per run")
    parser.add_argument(
        "--compilation-cache",
        type=Path,
        metavar="DIR",
        help="persistent XLA compilation cache: a later run of the same program skips compiling",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="purejaxppo", description="PPO in one jitted JAX function.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train one or many runs in one compiled call")
    _add_source_arguments(train)
    train.add_argument("--num-seeds", type=int, help="independent runs per setting")
    train.add_argument("--num-envs", type=int, help="parallel envs per run")
    train.add_argument("--seed", type=int, help="first seed; runs use seed, seed+1, ...")
    train.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="sweep a hyperparameter: every value x every seed in one compiled call",
    )
    train.add_argument("--out", type=Path, help="output directory (default: runs/<name>-<time>)")

    bench = commands.add_parser("bench", help="steps per second against the env-only floor")
    _add_source_arguments(bench)
    bench.add_argument(
        "--num-envs", default="4,64,512,2048", help="comma list (default %(default)s)"
    )
    bench.add_argument("--num-seeds", default="1,16", help="comma list (default %(default)s)")
    bench.add_argument("--repeats", type=int, default=3, help="timed calls per point (median)")
    bench.add_argument(
        "--min-updates", type=int, default=4, help="raise total_timesteps to this many updates"
    )
    bench.add_argument("--out", type=Path, help="output directory (default: runs/bench-<time>)")
    bench.add_argument("--profile", type=Path, metavar="DIR", help="jax.profiler trace of one call")
    return parser


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """A fully parsed and validated `train` command."""

    name: str
    config: PPOConfig
    hyperparams: Hyperparams
    seed: int
    num_seeds: int
    sweep: dict[str, list[float]]
    out: Path


def parse_value(name: str, text: str) -> Any:
    """Parse `text` for config field or hyperparameter `name`; ConfigError if it does not."""
    if name in HYPERPARAM_NAMES:
        return _parse_float(name, text)
    field = next(f for f in dataclasses.fields(PPOConfig) if f.name == name)
    default = field.default
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


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None


def _split_assignment(item: str, flag: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ConfigError(f"{flag} takes NAME=VALUE, got {item!r}")
    if name not in CONFIG_NAMES and name not in HYPERPARAM_NAMES:
        known = ", ".join((*CONFIG_NAMES, *HYPERPARAM_NAMES))
        raise ConfigError(f"unknown setting {name!r} in {flag} (known: {known})")
    return name, value


def _load_config_file(path: Path) -> tuple[PPOConfig, Hyperparams, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        fields = dict(data["config"])
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
        config, hp = PPOConfig(**fields), Hyperparams(**data["hyperparams"])
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    sweep = data.get("sweep", {})
    valid_sweep = isinstance(sweep, dict) and all(
        isinstance(v, list) and v and all(_is_number(x) for x in v) for v in sweep.values()
    )
    if not valid_sweep:
        raise ConfigError(f"config file {path}: sweep must map names to lists of numbers")
    for name in ("seed", "num_seeds"):
        if name in data and not (isinstance(data[name], int) and not isinstance(data[name], bool)):
            raise ConfigError(f"config file {path}: {name} must be an integer")
    return config, hp, data


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def resolve_base(args: argparse.Namespace) -> tuple[str, PPOConfig, Hyperparams, dict[str, Any]]:
    """Preset / env / config file, then --set and --total-timesteps; validated."""
    saved: dict[str, Any] = {}
    if args.config is not None:
        config, hp, saved = _load_config_file(args.config)
        name = saved.get("name", config.env)
    elif args.env is not None:
        config, hp, name = PPOConfig(env=args.env), Hyperparams(), args.env
    else:
        name = args.preset or "cartpole"
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
        config, hp = PRESETS[name]

    config_changes: dict[str, Any] = {}
    hp_changes: dict[str, float] = {}
    for item in args.set:
        key, text = _split_assignment(item, "--set")
        target = hp_changes if key in HYPERPARAM_NAMES else config_changes
        target[key] = parse_value(key, text)
    if args.total_timesteps is not None:
        config_changes["total_timesteps"] = args.total_timesteps
    if isinstance(args.num_envs, int):
        config_changes["num_envs"] = args.num_envs
    config = config.replace(**config_changes)  # validates
    hp = hp.replace(**hp_changes)
    validate_hyperparams(hp)
    if args.compilation_cache is not None:
        enable_compilation_cache(args.compilation_cache)
    return name, config, hp, saved


def enable_compilation_cache(path: Path) -> None:
    """Persist compiled programs under `path` (every program, however fast it compiled)."""
    import jax

    prepare_output_dir(path)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def resolve_train_request(args: argparse.Namespace) -> TrainRequest:
    """Turn parsed arguments into a validated request; raise ConfigError on any bad input."""
    name, config, hp, saved = resolve_base(args)
    saved_sweep = {k: [float(v) for v in vs] for k, vs in saved.get("sweep", {}).items()}
    sweep: dict[str, list[float]] = saved_sweep if not args.sweep else {}
    for item in args.sweep:
        key, text = _split_assignment(item, "--sweep")
        if key not in HYPERPARAM_NAMES:
            raise ConfigError(
                f"cannot sweep {key!r}: it is static (changes shapes or control flow); "
                f"sweepable: {', '.join(HYPERPARAM_NAMES)}"
            )
        values = [_parse_float(key, v) for v in text.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--sweep {key} has no values")
        if key in sweep:
            raise ConfigError(f"--sweep {key} is given twice: put all its values in one list")
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep {key} repeats a value: {text}")
        for value in values:
            validate_hyperparams(hp.replace(**{key: value}))
        sweep[key] = values

    num_seeds = args.num_seeds if args.num_seeds is not None else saved.get("num_seeds", 1)
    seed = args.seed if args.seed is not None else saved.get("seed", 0)
    if num_seeds <= 0:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds}")
    if not 0 <= seed <= MAX_SEED - (num_seeds - 1):
        raise ConfigError(
            f"seeds {seed}..{seed + num_seeds - 1} must lie in 0..{MAX_SEED} (32-bit seeds)"
        )
    out = args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return TrainRequest(name, config, hp, seed, num_seeds, sweep, out)


def prepare_output_dir(path: Path) -> None:
    """Create `path` and prove it is writable, before any compile."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write to output directory {path}: {error.strerror}") from None


def run_train(request: TrainRequest, argv: Sequence[str]) -> int:
    # Heavy imports after validation keep `--help` and input errors instant.
    from purejaxppo import report
    from purejaxppo.memory import check_fits
    from purejaxppo.population import build_population, first_nonfinite_update, train_population
    from purejaxppo.train import make_train

    trainer = make_train(request.config)  # unknown env -> ConfigError, before compiling
    population = build_population(
        request.hyperparams, request.seed, request.num_seeds, request.sweep
    )
    check_fits(request.config, trainer.spec, population.num_runs)
    prepare_output_dir(request.out)
    config = request.config
    print(
        f"training {population.num_runs} run(s) of {config.env}: {config.num_updates} updates x "
        f"{config.num_envs} envs x {config.num_steps} steps, one compiled call",
        flush=True,
    )
    output, timing = train_population(trainer, population)
    metrics = output.metrics
    env_steps = trainer.env_steps(range(1, config.num_updates + 1))
    out = request.out
    report.write_config(
        out / "config.json",
        config,
        request.hyperparams,
        request.seed,
        request.num_seeds,
        request.sweep,
        {"name": request.name, "argv": list(argv)},
    )
    report.write_metrics_csv(out / "metrics.csv", population, metrics, env_steps)
    summary = report.build_summary(config, population, metrics, timing, int(env_steps[-1]))
    report.write_json(out / "summary.json", summary)
    report.plot_learning_curve(
        out / "learning_curve.png",
        population,
        metrics,
        env_steps,
        f"{config.env} ({population.num_runs} runs)",
    )
    report.print_summary(summary)
    print(f"wrote {out}/config.json, metrics.csv, summary.json, learning_curve.png")
    nonfinite = first_nonfinite_update(metrics)
    if nonfinite is not None:
        run, update = nonfinite
        print(
            f"purejaxppo: error: the loss became NaN/inf at update {update + 1} of run {run} "
            f"(seed {population.seeds[run]}{_setting_text(population.swept[run])}); "
            "lower the learning rate or reward_scale",
            file=sys.stderr,
        )
        return EXIT_NAN
    return 0


def parse_int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes a comma list of integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{flag} takes positive integers, got {text!r}")
    return values


def run_bench(args: argparse.Namespace) -> int:
    from purejaxppo import bench, report

    num_envs = parse_int_list("--num-envs", args.num_envs)
    num_seeds = parse_int_list("--num-seeds", args.num_seeds)
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    args.num_envs = None  # a list here, applied per point below
    name, config, hp, _ = resolve_base(args)
    if args.min_updates < 1:
        raise ConfigError(f"--min-updates must be at least 1, got {args.min_updates}")
    for envs in num_envs:  # every grid point is valid before anything compiles
        bench.grid_point_config(config, envs, args.min_updates)
    from purejaxppo.envs import make_env
    from purejaxppo.memory import check_fits

    spec = make_env(config.env)
    for envs in num_envs:
        point = bench.grid_point_config(config, envs, args.min_updates)
        check_fits(point, spec, max(num_seeds))
    out = args.out or Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    prepare_output_dir(out)
    if args.profile is not None:
        prepare_output_dir(args.profile)
    device, versions = report.device_description(), report.library_versions()

    def show(row: dict[str, Any]) -> None:
        print(
            f"  {row['num_envs']:>6} envs x {row['num_seeds']:>4} runs: compile "
            f"{row['compile_s']:.2f} s, SPS {row['sps']:,.0f}, env-only {row['env_only_sps']:,.0f}"
            f" ({100 * row['fraction_of_floor']:.1f}%)",
            flush=True,
        )

    print(f"bench {name} ({config.env}) on {device}", flush=True)
    rows = bench.run_grid(
        config, hp, num_envs, num_seeds, args.repeats, args.profile, show, args.min_updates
    )
    for row in rows:
        row.update(device=device, versions=versions, hyperparams=hp.to_dict(), name=name)
    report.write_json(out / "bench.json", rows)
    bench.plot_grid(rows, out)
    bench.print_rows(rows)
    print(f"wrote {out}/bench.json, sps_vs_num_envs.png, fraction_of_floor.png")
    return 0


def _setting_text(setting: dict[str, float]) -> str:
    return "".join(f", {k}={v:g}" for k, v in setting.items())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return run_train(resolve_train_request(args), argv)
        if args.command == "bench":
            return run_bench(args)
    except ConfigError as error:
        print(f"purejaxppo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("purejaxppo: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
