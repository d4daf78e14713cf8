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


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) via ConfigError."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="purejaxppo", description="PPO in one jitted JAX function.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train one or many runs in one compiled call")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: cartpole)")
    source.add_argument("--env", help="a registered gymnax environment name")
    source.add_argument("--config", type=Path, help="a config.json written by an earlier run")
    train.add_argument("--num-seeds", type=int, help="independent runs per setting")
    train.add_argument("--num-envs", type=int, help="parallel envs per run")
    train.add_argument("--total-timesteps", type=int, help="env steps per run")
    train.add_argument("--seed", type=int, help="first seed; runs use seed, seed+1, ...")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any config field or hyperparameter, e.g. --set learning_rate=3e-4",
    )
    train.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="sweep a hyperparameter: every value x every seed in one compiled call",
    )
    train.add_argument("--out", type=Path, help="output directory (default: runs/<name>-<time>)")
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
        return PPOConfig(**fields), Hyperparams(**data["hyperparams"]), data
    except (OSError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"cannot read config file {path}: {error}") from None


def resolve_train_request(args: argparse.Namespace) -> TrainRequest:
    """Turn parsed arguments into a validated request; raise ConfigError on any bad input."""
    saved: dict[str, Any] = {}
    if args.config is not None:
        config, hp, saved = _load_config_file(args.config)
        name = Path(config.env).name
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
    for flag, key in (("num_envs", "num_envs"), ("total_timesteps", "total_timesteps")):
        if getattr(args, flag) is not None:
            config_changes[key] = getattr(args, flag)
    config = config.replace(**config_changes)  # validates
    hp = hp.replace(**hp_changes)
    validate_hyperparams(hp)

    sweep: dict[str, list[float]] = dict(saved.get("sweep", {})) if not args.sweep else {}
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
        for value in values:
            validate_hyperparams(hp.replace(**{key: value}))
        sweep[key] = values

    num_seeds = args.num_seeds if args.num_seeds is not None else saved.get("num_seeds", 1)
    seed = args.seed if args.seed is not None else saved.get("seed", 0)
    if num_seeds <= 0:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds}")
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
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
    from purejaxppo.population import build_population, first_nonfinite_update, train_population
    from purejaxppo.train import make_train

    trainer = make_train(request.config)  # unknown env -> ConfigError, before compiling
    population = build_population(
        request.hyperparams, request.seed, request.num_seeds, request.sweep
    )
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


def _setting_text(setting: dict[str, float]) -> str:
    return "".join(f", {k}={v:g}" for k, v in setting.items())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return run_train(resolve_train_request(args), argv)
    except ConfigError as error:
        print(f"purejaxppo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("purejaxppo: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
