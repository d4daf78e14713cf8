"""Steps-per-second profiling: compile time apart from run time, the env-only floor, memory.

For each point of a grid (num_envs x num_seeds) it compiles `jit(vmap(train))` (as
`train_population` does: `compile_program`) and, beside it, an env-only program with the
same env, the same num_envs x num_seeds and the same `lax.scan` shape (num_updates x
num_steps) but random actions and no learner: the floor. `fraction_of_floor = sps /
env_only_sps` tells how much the learner costs.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from purejaxppo.config import ConfigError, Hyperparams, PPOConfig, stack_hyperparams
from purejaxppo.envs.setup import EnvSetup, reset_envs, step_envs
from purejaxppo.ppo.trainer import Trainer, make_train
from purejaxppo.runs.chunked import compile_chunked, run_chunked
from purejaxppo.runs.compile import CompiledRuns, compile_program, trainer_program
from purejaxppo.runs.placement import LOCAL_RUNS
from purejaxppo.runs.population import Population


def compile_trained(trainer: Trainer, args: Sequence[Any]) -> tuple[Callable, float]:
    """The whole training of the runs of `args` (keys, hyperparams) on the default device,
    compiled as `train_population` compiles it, and the seconds that took."""
    compiled: CompiledRuns = compile_program(
        trainer_program(trainer, trainer, LOCAL_RUNS),
        args,
        compiler_options=trainer.tuning.compiler_options_dict(),
    )
    return compiled.program, compiled.compile_s


def time_alternating(
    programs: Sequence[tuple[Callable, Sequence[Any]]],
    repeats: int,
    trace_dir: Path | None = None,
    trace_index: int = 0,
) -> list[list[float]]:
    """Seconds per call of each compiled program: one warm-up call each (discarded), then
    `repeats` rounds calling them in turn, each ended by `block_until_ready`. Alternating
    keeps slow drifts of a noisy machine out of the ratios. With `trace_dir`, one more call
    of the first program (or of program `trace_index`), not timed, is written as a
    `jax.profiler` trace: tracing slows a call down."""
    for compiled, args in programs:
        jax.block_until_ready(compiled(*args))
    times: list[list[float]] = [[] for _ in programs]
    for _ in range(repeats):
        for i, (compiled, args) in enumerate(programs):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times[i].append(time.perf_counter() - start)
    if trace_dir is not None:
        compiled, args = programs[trace_index]
        jax.profiler.start_trace(str(trace_dir))
        try:
            jax.block_until_ready(compiled(*args))
        finally:
            jax.profiler.stop_trace()
    return times


def random_action(setup: EnvSetup, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform random actions `[*shape]` (discrete) or `[*shape, D]` within bounds."""
    if setup.discrete:
        return jax.random.randint(key, shape, 0, setup.action_dim)
    return jax.random.uniform(
        key, (*shape, setup.action_dim), minval=setup.action_low, maxval=setup.action_high
    )


def make_env_only(setup: EnvSetup, config: PPOConfig) -> Callable[[jax.Array], jax.Array]:
    """One run of the floor: num_updates x num_steps env steps of N envs, random actions.
    Returns the reward sum so nothing is optimised away."""

    def env_only(key: jax.Array) -> jax.Array:
        key, key_reset = jax.random.split(key)
        runner = reset_envs(setup, key_reset, config.num_envs)

        def step(carry, inputs):
            runner, total = carry
            keys, action = inputs
            runner, result = step_envs(setup, keys, runner, action)
            return (runner, total + result.reward.sum()), None

        def rollout(carry, key):
            # As lean as the trainer's rollout: keys and actions drawn for all steps at once.
            key_act, key_env = jax.random.split(key)
            keys = jax.random.split(key_env, (config.num_steps, config.num_envs))
            actions = random_action(setup, key_act, (config.num_steps, config.num_envs))
            carry, _ = jax.lax.scan(step, carry, (keys, actions))
            return carry, None

        keys = jax.random.split(key, config.num_updates)
        (_, total), _ = jax.lax.scan(rollout, (runner, jnp.zeros(())), keys)
        return total

    return env_only


def peak_memory_bytes() -> tuple[int, str]:
    """Peak bytes in use on the first device (GPU/TPU), or the process max RSS (CPU)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device_peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """How each point of a benchmark grid is measured."""

    repeats: int = 3
    """Timed calls per program and point; their median is quoted."""

    min_updates: int = 4
    """Each point's env steps are raised to at least this many updates, so wide points still
    time a scan."""

    total_timesteps: int | None = None
    """Env steps per run at each point (None: the config's `total_timesteps`)."""

    chunk_updates: int | None = None
    """Also time the chunked host loop in chunks of this many updates (None: not)."""

    trace_dir: Path | None = None
    """Write a `jax.profiler` trace of one more, untimed call of the first point's trainer."""

    def __post_init__(self) -> None:
        for name in ("repeats", "min_updates", "total_timesteps", "chunk_updates"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")


def bench_point(
    trainer: Trainer, hp: Hyperparams, num_seeds: int, options: BenchOptions
) -> dict[str, Any]:
    """Time the trainer and its env-only floor at one (num_envs, num_seeds) point; with
    `options.chunk_updates`, also the chunked host loop (init + chunks of K updates, metrics
    to the host after each) in the same alternation, and its overhead over the single call."""
    config = trainer.config
    keys = jax.random.split(jax.random.key(0), num_seeds)
    hps = stack_hyperparams([hp] * num_seeds)
    # The trainer as `train` compiles it; the floor with XLA's defaults and kept vmapped,
    # its fastest setting.
    train, compile_s = compile_trained(trainer, (keys, hps))
    floor_compiled = compile_program(LOCAL_RUNS.map(make_env_only(trainer.env, config)), (keys,))
    floor, floor_compile_s = floor_compiled.program, floor_compiled.compile_s
    programs = [(train, (keys, hps)), (floor, (keys,))]
    chunked = None
    if options.chunk_updates is not None:
        population = Population(tuple(range(num_seeds)), ({},) * num_seeds, keys, hps)
        chunked = compile_chunked(trainer, population, options.chunk_updates)
        # The floor runs first, so that the single call and the chunked loop both run after
        # a learner program (the program after the floor's measured slower).
        loop = (lambda: run_chunked(chunked, population).state, ())
        programs = [(floor, (keys,)), (train, (keys, hps)), loop]
    times = time_alternating(
        programs, options.repeats, options.trace_dir, 0 if chunked is None else 1
    )
    train_times, floor_times = (times[1], times[0]) if chunked is not None else times[:2]
    row = point_row(trainer, num_seeds, (compile_s, train_times), (floor_compile_s, floor_times))
    if chunked is not None:
        row.update(chunked_figures(row, chunked, options.chunk_updates, times[2]))
    return row


def point_row(
    trainer: Trainer,
    num_seeds: int,
    trainer_times: tuple[float, list[float]],
    floor_times: tuple[float, list[float]],
) -> dict[str, Any]:
    """A grid point's figures from `(compile_s, run times)` of the trainer and of its floor."""
    config = trainer.config
    env_steps = num_seeds * config.num_updates * config.batch_size
    run_s, floor_run_s = statistics.median(trainer_times[1]), statistics.median(floor_times[1])
    peak, peak_kind = peak_memory_bytes()
    sps, floor_sps = env_steps / run_s, env_steps / floor_run_s
    return {
        "env": config.env,
        "num_envs": config.num_envs,
        "num_seeds": num_seeds,
        "num_updates": config.num_updates,
        "env_steps": env_steps,
        "compile_s": trainer_times[0],
        "run_s": run_s,
        "run_times": trainer_times[1],
        "sps": sps,
        "env_only_compile_s": floor_times[0],
        "env_only_run_s": floor_run_s,
        "env_only_run_times": floor_times[1],
        "env_only_sps": floor_sps,
        "fraction_of_floor": sps / floor_sps,
        "peak_bytes": peak,
        "peak_bytes_kind": peak_kind,
        "config": config.to_dict(),
        "tuning": trainer_tuning(trainer),
    }


def trainer_tuning(trainer: Trainer) -> dict[str, Any]:
    """The trainer's backend tuning as JSON (what its programs were built with)."""
    return trainer.tuning.to_dict()


def chunked_figures(
    row: dict[str, Any], chunked: Any, chunk_updates: int, times: list[float]
) -> dict[str, Any]:
    """The chunked loop's figures beside a point's `row`: its SPS and overhead."""
    chunked_run_s = statistics.median(times)
    return {
        "chunk_updates": chunk_updates,
        "num_chunks": -(-row["num_updates"] // chunk_updates),
        "chunked_compile_s": chunked.compile_s,
        "chunked_run_s": chunked_run_s,
        "chunked_run_times": times,
        "chunked_sps": row["env_steps"] / chunked_run_s,
        "chunk_overhead": chunked_run_s / row["run_s"] - 1.0,
    }


def run_grid(
    config: PPOConfig,
    hp: Hyperparams,
    num_envs: Sequence[int],
    num_seeds: Sequence[int],
    options: BenchOptions = BenchOptions(),
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (num_envs, num_seeds) point, envs-major; each trains `options.total_timesteps`
    env steps per run, raised where needed to `options.min_updates` updates. Every point's
    config is checked before the first compile (`grid_point_configs`); only the first point
    is traced (`options.trace_dir`)."""
    rows = []
    points = grid_point_configs(
        config, num_envs, options.min_updates, options.total_timesteps, options.chunk_updates
    )
    for point in points:
        trainer = make_train(point)
        for seeds in num_seeds:
            here = options if not rows else dataclasses.replace(options, trace_dir=None)
            row = bench_point(trainer, hp, seeds, here)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def grid_point_config(
    config: PPOConfig, num_envs: int, min_updates: int, total_timesteps: int | None = None
) -> PPOConfig:
    """`config` at `num_envs` envs, training `total_timesteps` env steps per run (default
    `config.total_timesteps`) raised to at least `min_updates` updates (validated)."""
    total = config.total_timesteps if total_timesteps is None else total_timesteps
    steps = max(total, num_envs * config.num_steps * min_updates)
    return config.replace(num_envs=num_envs, total_timesteps=steps)


def grid_point_configs(
    config: PPOConfig,
    num_envs: Sequence[int],
    min_updates: int,
    total_timesteps: int | None = None,
    chunk_updates: int | None = None,
) -> list[PPOConfig]:
    """`grid_point_config` of every `num_envs`; a `ConfigError` if any is invalid or has
    fewer updates than `chunk_updates`."""
    points = [grid_point_config(config, n, min_updates, total_timesteps) for n in num_envs]
    for point in points:
        if chunk_updates is not None and chunk_updates > point.num_updates:
            raise ConfigError(
                f"chunk_updates = {chunk_updates} is more than the {point.num_updates} updates "
                f"of the {point.num_envs}-env point"
            )
    return points
