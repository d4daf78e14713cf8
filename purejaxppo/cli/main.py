"""Command line: `purejaxppo train ...` (also `python -m purejaxppo`).

Every check on the input runs before anything is compiled; a bad input prints one line,
`purejaxppo: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
    source.add_argument(
        "--env",
        help="an environment: a gymnax name (CartPole-v1), brax:NAME or xminigrid:NAME "
        "(`purejaxppo envs` lists them)",
    )
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
    train.add_argument(
        "--chunk-updates",
        type=int,
        metavar="K",
        help="updates per compiled chunk of the host loop (default: about 1/20 of the run)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="CHUNKS",
        help="save a checkpoint every N chunks, and always at the end (0: only at the end; "
        "default 10, or the resumed run's)",
    )
    train.add_argument(
        "--resume", type=Path, metavar="DIR", help="continue the run saved in DIR (its --out)"
    )
    train.add_argument(
        "--eval-every",
        type=int,
        metavar="CHUNKS",
        help="evaluate the deterministic policy every N chunks into metrics.csv (0: never; "
        "default 0, or the resumed run's)",
    )
    train.add_argument(
        "--eval-episodes",
        type=int,
        help="episodes per run and evaluation (default 16, or the resumed run's)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard logs to OUT/tensorboard (needs purejaxppo[tensorboard])",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="shard the runs over the first N devices (default: all devices of all processes)",
    )
    hosts = train.add_argument_group(
        "several processes (jax.distributed; or PUREJAXPPO_COORDINATOR, "
        "PUREJAXPPO_NUM_PROCESSES, PUREJAXPPO_PROCESS_ID; detected under SLURM)"
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    hosts.add_argument("--num-processes", type=int, help="number of processes")
    hosts.add_argument("--process-id", type=int, help="this process's index, 0..n-1")

    evaluate = commands.add_parser("eval", help="play the saved policies of a trained run")
    evaluate.add_argument("run_dir", type=Path, help="the --out directory of a train run")
    evaluate.add_argument("--episodes", type=int, default=32, help="episodes per run and mode")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the evaluation envs")
    evaluate.add_argument(
        "--out",
        type=Path,
        help="results file, or a directory for eval.json (default: RUN_DIR/eval.json)",
    )

    envs = commands.add_parser("envs", help="list environments by suite, and what is installed")
    envs.add_argument("suite", nargs="?", help="only this suite: gymnax, brax or xminigrid")

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
    bench.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="jax.profiler trace of one more call of the first point's trainer (not timed)",
    )
    bench.add_argument(
        "--chunk-updates",
        type=int,
        metavar="K",
        help="also time the chunked host loop (chunks of K updates) and its overhead",
    )
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
    chunk_updates: int | None = None
    checkpoint_every: int = 10
    eval_every: int = 0
    eval_episodes: int = 16
    tensorboard: bool = False
    progress: bool = True
    resume: bool = False
    devices: int | None = None


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
        config = PPOConfig(**fields)
        hp = hyperparams_from_json(data["hyperparams"], f"config file {path}")
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
    for name, values in sweep.items():
        check_sweep(name, [float(v) for v in values], hp, f"config file {path}: sweep")
    for name in ("seed", "num_seeds"):
        if name in data and not (isinstance(data[name], int) and not isinstance(data[name], bool)):
            raise ConfigError(f"config file {path}: {name} must be an integer")
    return config, hp, data


def hyperparams_from_json(values: Any, where: str = "") -> Hyperparams:
    """`Hyperparams` of one run from a JSON object of numbers (a config file's or a
    checkpoint's "hyperparams"); anything else, a list or `true` say, is a ConfigError
    (`Hyperparams` itself also takes `[R]` arrays and bools). `where` prefixes the error."""
    prefix = f"{where}: " if where else ""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix}hyperparams must be an object of numbers")
    for name, value in values.items():
        if not _is_number(value):
            raise ConfigError(f"{prefix}hyperparams: {name} must be a number, got {value!r}")
    return Hyperparams(**values)


def check_sweepable(name: str, where: str) -> None:
    if name not in HYPERPARAM_NAMES:
        raise ConfigError(
            f"{where}: cannot sweep {name!r}: it is static (changes shapes or control flow); "
            f"sweepable: {', '.join(HYPERPARAM_NAMES)}"
        )


def check_sweep(name: str, values: list[float], hp: Hyperparams, where: str) -> None:
    """A swept hyperparameter: sweepable, at least one value, none repeated, each valid."""
    check_sweepable(name, where)
    if not values:
        raise ConfigError(f"{where} {name} has no values")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} {name} repeats a value: {values}")
    for value in values:
        validate_hyperparams(hp.replace(**{name: value}))


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
    for flag, value in (("--total-timesteps", args.total_timesteps), ("--num-envs", args.num_envs)):
        field = flag[2:].replace("-", "_")
        if value is None:
            continue
        if field in config_changes:
            raise ConfigError(f"{field} is given twice, by --set {field}=... and by {flag}")
        config_changes[field] = value
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
    loop_options = resolve_loop_options(args)
    if args.resume is not None:  # the saved loop options, but for those given again
        request = resolve_resume(args)
        return dataclasses.replace(
            request, **{**loop_options, "chunk_updates": request.chunk_updates}
        )
    name, config, hp, saved = resolve_base(args)
    saved_sweep = {k: [float(v) for v in vs] for k, vs in saved.get("sweep", {}).items()}
    sweep: dict[str, list[float]] = saved_sweep if not args.sweep else {}
    for item in args.sweep:
        key, text = _split_assignment(item, "--sweep")
        check_sweepable(key, "--sweep")
        values = [_parse_float(key, v) for v in text.split(",") if v.strip()]
        if key in sweep:
            raise ConfigError(f"--sweep {key} is given twice: put all its values in one list")
        check_sweep(key, values, hp, "--sweep")
        sweep[key] = values
    set_names = {_split_assignment(item, "--set")[0] for item in args.set}
    for key in sweep:
        if key in set_names:
            raise ConfigError(f"{key} is both set (--set) and swept: drop one of them")

    num_seeds = args.num_seeds if args.num_seeds is not None else saved.get("num_seeds", 1)
    seed = args.seed if args.seed is not None else saved.get("seed", 0)
    if num_seeds <= 0:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds}")
    if not 0 <= seed <= MAX_SEED - (num_seeds - 1):
        raise ConfigError(
            f"seeds {seed}..{seed + num_seeds - 1} must lie in 0..{MAX_SEED} (32-bit seeds)"
        )
    if args.out is None and _several_processes():
        raise ConfigError("a run of several processes needs --out (the same directory for all)")
    default_out = f"{name.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = args.out or Path("runs") / default_out
    from purejaxppo.outputs.checkpoint import latest_updates

    if latest_updates(out) is not None:
        raise ConfigError(
            f"{out} already holds a checkpointed run: --resume {out}, or another --out"
        )
    request = TrainRequest(name, config, hp, seed, num_seeds, sweep, out, **loop_options)
    check_chunk_updates(request)
    return request


def _several_processes() -> bool:
    import jax

    return jax.distributed.is_initialized() and jax.process_count() > 1


def resolve_loop_options(args: argparse.Namespace) -> dict[str, Any]:
    for flag, value, low in (
        ("--chunk-updates", args.chunk_updates, 1),
        ("--checkpoint-every", args.checkpoint_every, 0),
        ("--eval-every", args.eval_every, 0),
        ("--eval-episodes", args.eval_episodes, 1),
        ("--devices", args.devices, 1),
    ):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be an integer >= {low}, got {value}")
    given = {
        "chunk_updates": args.chunk_updates,
        "checkpoint_every": args.checkpoint_every,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "tensorboard": args.tensorboard or None,
        "progress": not args.no_progress,
        "devices": args.devices,
    }
    return {name: value for name, value in given.items() if value is not None}


def check_chunk_updates(request: TrainRequest) -> None:
    updates = request.config.num_updates
    if request.chunk_updates is not None and request.chunk_updates > updates:
        raise ConfigError(
            f"--chunk-updates {request.chunk_updates} is more than the run's {updates} updates"
        )


# What `--resume` continues with unless given again (saved in the checkpoint's metadata).
SAVED_LOOP_OPTIONS = ("checkpoint_every", "eval_every", "eval_episodes", "tensorboard")

RESUME_CONFLICTS = (
    "preset",
    "env",
    "config",
    "num_seeds",
    "num_envs",
    "seed",
    "total_timesteps",
    "out",
)


def resolve_resume(args: argparse.Namespace) -> TrainRequest:
    """The request saved with the newest checkpoint in `args.resume`."""
    from purejaxppo.outputs.checkpoint import CheckpointError, read_meta

    given = [f"--{n.replace('_', '-')}" for n in RESUME_CONFLICTS if getattr(args, n) is not None]
    given += [flag for flag in ("--set", "--sweep") if getattr(args, flag[2:])]
    if given:
        raise ConfigError(
            f"--resume continues a run with its saved settings; drop {', '.join(given)}"
        )
    meta = read_meta(args.resume)
    try:
        fields = dict(meta["config"])
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
        config = PPOConfig(**fields)
        hp = hyperparams_from_json(meta["hyperparams"])  # a ConfigError is a ValueError
        sweep = {k: [float(v) for v in vs] for k, vs in meta["sweep"].items()}
        request = TrainRequest(
            meta["name"],
            config,
            hp,
            int(meta["seed"]),
            int(meta["num_seeds"]),
            sweep,
            args.resume,
            chunk_updates=args.chunk_updates or int(meta["chunk_updates"]),
            resume=True,
            **{
                name: meta["loop"][name]
                for name in SAVED_LOOP_OPTIONS
                if name in meta.get("loop", {})
            },
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint metadata in {args.resume} is incomplete or invalid: {error}"
        ) from None
    if args.compilation_cache is not None:
        enable_compilation_cache(args.compilation_cache)
    check_chunk_updates(request)
    return request


def prepare_output_dir(path: Path) -> None:
    """Create `path` and prove it is writable, before any compile."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot write to output directory {path}: {error.strerror}") from None


def run_train(request: TrainRequest, argv: Sequence[str]) -> int:
    """Train in chunks: progress bar, metrics.csv as chunks finish, checkpoints, evaluation;
    then summary.json and learning_curve.png. SIGINT/SIGTERM stop at a chunk boundary."""
    # Heavy imports after validation keep `--help` and input errors instant.
    import jax

    from purejaxppo.metrics import first_nonfinite_update
    from purejaxppo.outputs import console, plots
    from purejaxppo.outputs import logs as metric_logs
    from purejaxppo.outputs import summary as report
    from purejaxppo.outputs.checkpoint import CheckpointError, open_manager, restore_checkpoint
    from purejaxppo.outputs.console import TrainProgress
    from purejaxppo.ppo.trainer import make_train
    from purejaxppo.ppo.types import policy_of
    from purejaxppo.runs.chunked import (
        StopOnSignals,
        abstract_train_state,
        compile_chunked,
        default_chunk_updates,
        run_chunked,
        unpadded_state,
    )
    from purejaxppo.runs.memory_budget import check_fits, check_metrics_fit
    from purejaxppo.runs.placement import make_placement, place_runs
    from purejaxppo.runs.population import build_population

    config, out = request.config, request.out
    runs = make_placement(request.devices)
    writer = jax.process_index() == 0  # process 0 writes the outputs; all save checkpoints
    trainer = make_train(config)  # unknown env -> ConfigError, before compiling
    population = build_population(
        request.hyperparams, request.seed, request.num_seeds, request.sweep
    )
    runs_per_device = runs.padded(population.num_runs) // runs.num_devices
    check_fits(config, trainer.spec, runs_per_device)
    check_metrics_fit(config, population.num_runs)
    if request.tensorboard and writer:
        metric_logs.tensorboard_writer_class()  # a missing tensorboardX fails before compiling
    prepare_output_dir(out)
    chunk_updates = request.chunk_updates or default_chunk_updates(config.num_updates)
    meta = {
        "name": request.name,
        "env": config.env,
        "config": config.to_dict(),
        "hyperparams": {k: float(v) for k, v in request.hyperparams.to_dict().items()},
        "seed": request.seed,
        "num_seeds": request.num_seeds,
        "sweep": request.sweep,
        "seeds": list(population.seeds),
        "num_updates": config.num_updates,
        "chunk_updates": chunk_updates,
        "loop": {name: getattr(request, name) for name in SAVED_LOOP_OPTIONS},
    }
    resume, updates_done = None, 0
    evaluations: dict[int, np.ndarray] = {}  # update -> [R] mean deterministic eval return
    if request.resume:
        restored = restore_checkpoint(
            out, abstract_train_state(trainer, population), population.num_runs
        )
        if restored.meta.get("seeds") != meta["seeds"]:
            raise CheckpointError(f"checkpoint in {out} is of other runs than its metadata says")
        updates_done = restored.updates_done
        if updates_done >= config.num_updates:
            print(
                f"{out}: all {config.num_updates} updates are done, nothing to train "
                f"(evaluate it with: purejaxppo eval {out})"
            )
            return 0
        evaluations = report.evaluations_from_json(restored.meta.get("evaluations", {}))
        state = place_runs(runs, restored.state, population.num_runs)
        resume = (state, restored.metrics, updates_done)
    placement = (
        f" over {runs.num_devices} devices ({jax.process_count()} process(es))"
        if runs.num_devices > 1 or jax.process_count() > 1
        else ""
    )
    say = print if writer else (lambda *a, **k: None)
    say(
        f"training {population.num_runs} run(s) of {config.env}{placement}: "
        f"{config.num_updates} updates x {config.num_envs} envs x {config.num_steps} steps, "
        f"in chunks of {chunk_updates} updates"
        + (f", resuming after update {updates_done}" if request.resume else ""),
        flush=True,
    )
    program = compile_chunked(trainer, population, chunk_updates, updates_done, runs)
    logs: list[Any] = []
    if writer:
        report.write_config(
            out / "config.json",
            config,
            request.hyperparams,
            request.seed,
            request.num_seeds,
            request.sweep,
            {"name": request.name, "argv": list(argv)},
        )
        logs.append(metric_logs.MetricsCsv(out / "metrics.csv", population, config.batch_size))
        if resume is not None:
            logs[0].append(resume[1], 0, evaluations)
        if request.tensorboard:
            tensorboard = metric_logs.TensorBoardLog(
                out / "tensorboard", population, config.batch_size
            )
            logs.append(tensorboard)
    manager = open_manager(out)
    # Counted from the start of the run, so a resumed run keeps the cadence of
    # --eval-every and --checkpoint-every (its checkpoint lies on a chunk boundary).
    chunks_done = updates_done // chunk_updates

    def on_chunk(run: Any, done: Any) -> None:
        nonlocal chunks_done
        chunks_done += 1
        first = done.updates_done - int(np.asarray(done.chunk_metrics.total_loss).shape[-1])
        evaluated: dict[int, np.ndarray] = {}
        if request.eval_every and chunks_done % request.eval_every == 0:
            policy = runs.to_host(policy_of(config, run.state))
            evaluated[done.updates_done] = mean_eval_returns(trainer, policy, population, request)
            evaluations.update(evaluated)
        for log in logs:
            log.append(done.chunk_metrics, first, evaluated)
        bar.update(done)
        periodic = request.checkpoint_every and chunks_done % request.checkpoint_every == 0
        if periodic and done.updates_done < config.num_updates:
            save(run)

    def save(run: Any) -> None:
        from purejaxppo.outputs.checkpoint import save_checkpoint

        if run.updates_done == 0 or manager.latest_step() == run.updates_done:
            return  # nothing trained yet, or saved at this update already
        state = unpadded_state(runs, run.state, population.num_runs)
        saved = {
            **meta,
            "updates_done": run.updates_done,
            "evaluations": report.evaluations_to_json(evaluations),
        }
        save_checkpoint(manager, state, run.metrics, saved)

    steps_per_update = config.batch_size * population.num_runs
    enabled = request.progress and writer
    with (
        StopOnSignals() as stop,
        TrainProgress(config.num_updates, updates_done, steps_per_update, enabled) as bar,
    ):
        run = run_chunked(
            program, population, resume=resume, on_chunk=on_chunk, stop_requested=stop.requested
        )
    save(run)
    manager.close()
    for log in logs[1:]:
        log.close()
    metrics = run.metrics
    nonfinite = first_nonfinite_update(metrics)
    if not writer:
        if stop.signal_number is not None:
            return 128 + stop.signal_number
        return EXIT_NAN if nonfinite is not None else 0
    env_steps = trainer.env_steps(range(1, run.updates_done + 1))
    summary = report.build_summary(
        config, population, metrics, run.timing, run.updates_done - updates_done
    )
    report.write_json(out / "summary.json", summary)
    if run.updates_done > 0:
        plots.plot_learning_curve(
            out / "learning_curve.png",
            population,
            metrics,
            env_steps,
            f"{config.env} ({population.num_runs} runs)",
        )
    console.print_summary(summary)
    print(f"wrote {out}/config.json, metrics.csv, summary.json, learning_curve.png, checkpoints/")
    if stop.signal_number is not None:
        if run.updates_done == 0:
            saved_note = "no checkpoint was saved (no update had finished)"
        else:
            saved_note = f"checkpoint saved. Continue with: purejaxppo train --resume {out}"
        print(
            f"purejaxppo: stopped after {run.updates_done} of {config.num_updates} updates; "
            + saved_note,
            file=sys.stderr,
        )
        return 128 + stop.signal_number
    if nonfinite is not None:
        run_index, update = nonfinite
        print(
            f"purejaxppo: error: the loss became NaN/inf at update {update + 1} of run "
            f"{run_index} (seed {population.seeds[run_index]}"
            f"{_setting_text(population.swept[run_index])}); lower the learning rate or "
            "reward_scale",
            file=sys.stderr,
        )
        return EXIT_NAN
    return 0


def mean_eval_returns(
    trainer: Any, policy: Any, population: Any, request: TrainRequest
) -> np.ndarray:
    """Per run `[R]`: mean deterministic return over `eval_episodes` fresh episodes."""
    import jax

    from purejaxppo.ppo.evaluate import evaluate_runs
    from purejaxppo.runs.placement import unpad_runs

    policy = unpad_runs(policy, population.num_runs)
    result = evaluate_runs(
        trainer, policy, jax.random.key(request.seed), request.eval_episodes, True
    )
    finished = np.asarray(result.finished)
    returns = np.where(finished, np.asarray(result.returns, dtype=np.float64), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finished.any(-1), returns.sum(-1) / finished.sum(-1), np.nan)


def run_eval(args: argparse.Namespace) -> int:
    """`purejaxppo eval DIR`: the newest checkpoint's policies, deterministic and sampled."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must lie in 0..{MAX_SEED}")
    args_resume = argparse.Namespace(
        resume=args.run_dir,
        compilation_cache=None,
        set=[],
        sweep=[],
        chunk_updates=None,
        **{name: None for name in RESUME_CONFLICTS},
    )
    request = resolve_resume(args_resume)
    out = args.out or request.out / "eval.json"
    if out.is_dir():
        out = out / "eval.json"
    prepare_output_dir(out.parent)

    import jax

    from purejaxppo.outputs import console
    from purejaxppo.outputs import summary as report
    from purejaxppo.outputs.checkpoint import restore_checkpoint
    from purejaxppo.ppo.evaluate import evaluate_runs, summarize_eval
    from purejaxppo.ppo.trainer import make_train
    from purejaxppo.ppo.types import policy_of
    from purejaxppo.runs.chunked import abstract_train_state
    from purejaxppo.runs.population import build_population

    trainer = make_train(request.config)
    population = build_population(
        request.hyperparams, request.seed, request.num_seeds, request.sweep
    )
    restored = restore_checkpoint(
        request.out, abstract_train_state(trainer, population), population.num_runs
    )
    key = jax.random.key(args.seed)
    results: dict[str, list[dict[str, Any]]] = {}
    for mode, deterministic in (("deterministic", True), ("stochastic", False)):
        policy = policy_of(trainer.config, restored.state)
        result = evaluate_runs(trainer, policy, key, args.episodes, deterministic)
        results[mode] = summarize_eval(result)
    rows = []
    for run in range(population.num_runs):
        row = {"run": run, "seed": population.seeds[run], "setting": population.swept[run]}
        for mode in results:
            row[mode] = results[mode][run]
        rows.append(row)
    report.write_json(
        out,
        {
            "run_dir": str(request.out),
            "env": request.config.env,
            "updates_done": restored.updates_done,
            "episodes": args.episodes,
            "eval_seed": args.seed,
            "runs": rows,
        },
    )
    console.print_eval(request.config.env, restored.updates_done, rows)
    print(f"wrote {out}")
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
    from purejaxppo.outputs import console, plots
    from purejaxppo.outputs import summary as report
    from purejaxppo.runs import bench

    num_envs = parse_int_list("--num-envs", args.num_envs)
    num_seeds = parse_int_list("--num-seeds", args.num_seeds)
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    if args.min_updates < 1:
        raise ConfigError(f"--min-updates must be at least 1, got {args.min_updates}")
    if args.chunk_updates is not None and args.chunk_updates < 1:
        raise ConfigError(f"--chunk-updates must be at least 1, got {args.chunk_updates}")
    if any(_split_assignment(item, "--set")[0] == "num_envs" for item in args.set):
        raise ConfigError("bench takes num_envs from --num-envs (a comma list), not --set")
    # The base config at the grid's first point; --total-timesteps applies per point, where
    # --min-updates may raise it.
    args.num_envs = num_envs[0]
    total_timesteps, args.total_timesteps = args.total_timesteps, None
    name, config, hp, _ = resolve_base(args)
    # Every grid point is valid, and fits, before anything compiles.
    points = bench.grid_point_configs(
        config, num_envs, args.min_updates, total_timesteps, args.chunk_updates
    )
    from purejaxppo.envs.spec import make_env
    from purejaxppo.runs.memory_budget import check_fits

    spec = make_env(config.env)
    for point in points:
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
            f" ({100 * row['fraction_of_floor']:.1f}%)"
            + (
                f", chunked ({row['num_chunks']} chunks) {row['chunked_sps']:,.0f} SPS, "
                f"overhead {100 * row['chunk_overhead']:+.1f}%"
                if "chunk_overhead" in row
                else ""
            ),
            flush=True,
        )

    print(f"bench {name} ({config.env}) on {device}", flush=True)
    options = bench.BenchOptions(
        repeats=args.repeats,
        min_updates=args.min_updates,
        total_timesteps=total_timesteps,
        chunk_updates=args.chunk_updates,
        trace_dir=args.profile,
    )
    rows = bench.run_grid(config, hp, num_envs, num_seeds, options, show)
    for row in rows:
        row.update(device=device, versions=versions, hyperparams=hp.to_dict(), name=name)
    report.write_json(out / "bench.json", rows)
    plots.plot_grid(rows, out)
    console.print_rows(rows)
    print(f"wrote {out}/bench.json, sps_vs_num_envs.png, fraction_of_floor.png")
    return 0


def run_envs(args: argparse.Namespace) -> int:
    """`purejaxppo envs [SUITE]`: every env name per suite, or how to install the suite."""
    from purejaxppo.envs.suites import SUITES

    if args.suite is not None and args.suite not in SUITES:
        raise ConfigError(f"unknown suite {args.suite!r} (known: {', '.join(SUITES)})")
    for suite in SUITES.values():
        if args.suite not in (None, suite.name):
            continue
        if not suite.installed():
            print(f"{suite.name}: not installed ({suite.install_command()})")
            continue
        names = suite.env_names()
        prefix = "" if suite.name == "gymnax" else f"{suite.name}:"
        print(f"{suite.name} ({len(names)} envs):")
        print("\n".join(f"  {prefix}{name}" for name in names))
    return 0


def _setting_text(setting: dict[str, float]) -> str:
    return "".join(f", {k}={v:g}" for k, v in setting.items())


# Library errors name settings by field; the CLI user knows them by flag.
FLAG_OF_FIELD = {"chunk_updates": "--chunk-updates", "num_devices": "--devices"}


def flag_names(message: str) -> str:
    """`message` with a leading `field = value` written as the flag that sets it."""
    for field, flag in FLAG_OF_FIELD.items():
        if message.startswith(f"{field} = "):
            return f"{flag} {message[len(field) + 3 :]}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's notices on every restore
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            from purejaxppo.runs.processes import initialize_distributed

            # Before anything imports gymnax, whose import starts the XLA backend.
            initialize_distributed(args.coordinator, args.num_processes, args.process_id)
            return run_train(resolve_train_request(args), argv)
        if args.command == "bench":
            return run_bench(args)
        if args.command == "eval":
            return run_eval(args)
        if args.command == "envs":
            return run_envs(args)
    except ConfigError as error:
        print(f"purejaxppo: error: {flag_names(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("purejaxppo: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
