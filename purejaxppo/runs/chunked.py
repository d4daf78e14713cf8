"""Long runs in chunks: one compiled chunk of K updates, driven by a host loop.

    init ─► chunk(K) ─► chunk(K) ─► ... ─► chunk(remainder)
              │ metrics [R, K] to the host; callbacks: progress, logs, checkpoints, eval

`chunk` is `run_updates(trainer, hp, state, K)` mapped over the run axis, so K chunks of an
update each give the same state and metrics, bit for bit, as one call of `train` (tested).
The state stays on the device between chunks and is donated to the next chunk; only the
chunk's metrics `[R, K]` come back to the host. Between two chunks the loop asks
`stop_requested()`, so a SIGINT/SIGTERM handler (`purejaxppo.runs.stop`) can stop it at a
chunk boundary.

The run axis is placed and mapped by a `Placement` (`purejaxppo.runs.placement`): all runs
on the default device, or split over a device mesh; every program is compiled by
`compile_trainer_program`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from purejaxppo.config import ConfigError, Hyperparams
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import Metrics, TrainState, empty_metrics
from purejaxppo.runs.compile import (
    CompiledRuns,
    compile_population_program,
    compile_trainer_program,
)
from purejaxppo.runs.pbt import (
    PBTLog,
    PBTPlan,
    concat_logs,
    initial_fitness,
    log_to_host,
    pbt_chunk,
)
from purejaxppo.runs.placement import (
    LOCAL_RUNS,
    Placement,
    place_runs,
    runs_to_host,
    unpad_runs,
)
from purejaxppo.runs.population import Population, Timing
from purejaxppo.runs.processes import agreed_stop_code


@dataclasses.dataclass(frozen=True)
class ChunkDone:
    """What the loop reports after each chunk."""

    updates_done: int  # updates finished by every run so far
    num_updates: int
    chunk_metrics: Metrics  # this chunk's metrics, numpy [R, k]
    run_s: float  # seconds spent running chunks so far (this session)
    session_updates: int  # updates run in this session (excludes restored ones)
    pbt_log: PBTLog | None = None  # this chunk's PBT steps, numpy [S, R] (None: no PBT)


class ResumePoint(NamedTuple):
    """Where a chunked run continues from."""

    state: TrainState  # placed as the program takes it
    metrics: Metrics  # numpy [R, updates_done]
    updates_done: int
    hyperparams: Hyperparams | None = (
        None  # host [R]: PBT's evolved values (None: the population's)
    )
    fitness: np.ndarray | None = None  # host [R]: PBT's last fitness
    pbt_log: PBTLog | None = None  # numpy: the PBT steps so far


@dataclasses.dataclass
class ChunkedRun:
    """The state of a chunked run: `metrics` (numpy `[R, updates_done]`) grows by chunks,
    and with PBT its `pbt_log` (numpy `[S, R]`) by steps."""

    state: TrainState  # on the device(s), run axis padded
    metric_parts: list[Metrics]
    updates_done: int
    timing: Timing
    hyperparams: Hyperparams  # every run's current values, placed (PBT changes them)
    fitness: Any = None  # PBT's last fitness [R], placed (None: no PBT)
    pbt_parts: list[PBTLog] = dataclasses.field(default_factory=list)
    stopped: bool = False  # True if `stop_requested` ended it before num_updates
    stop_code: int = 0  # the agreed `stop_requested()` that stopped it (a signal number)

    @property
    def metrics(self) -> Metrics:
        if len(self.metric_parts) > 1:
            self.metric_parts[:] = [concat_metrics(self.metric_parts)]
        return self.metric_parts[0]

    @property
    def pbt_log(self) -> PBTLog | None:
        if len(self.pbt_parts) > 1:
            self.pbt_parts[:] = [concat_logs(self.pbt_parts)]
        return self.pbt_parts[0] if self.pbt_parts else None


def chunk_sizes(num_updates: int, chunk_updates: int, updates_done: int = 0) -> list[int]:
    """Sizes of the chunks still to run: `chunk_updates` each, the last one shorter."""
    if chunk_updates < 1:
        raise ConfigError(f"chunk_updates must be a positive integer, got {chunk_updates}")
    if not 0 <= updates_done <= num_updates:
        raise ConfigError(f"updates_done {updates_done} is outside 0..{num_updates}")
    remaining = num_updates - updates_done
    sizes = [chunk_updates] * (remaining // chunk_updates)
    return sizes + ([remaining % chunk_updates] if remaining % chunk_updates else [])


def default_chunk_updates(num_updates: int, target_chunks: int = 20) -> int:
    """A chunk size near `num_updates / target_chunks`: a divisor of `num_updates` if one is
    within 2x of it (one compiled chunk), else that size (and one shorter last chunk)."""
    target = max(1, num_updates // target_chunks)
    small = [d for d in range(1, math.isqrt(num_updates) + 1) if num_updates % d == 0]
    divisors = small + [num_updates // d for d in small]
    best = min(divisors, key=lambda d: (abs(math.log(d / target)), d))
    return best if target / 2 <= best <= target * 2 else target


def concat_metrics(parts: Sequence[Metrics]) -> Metrics:
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=-1), *parts)


@dataclasses.dataclass(frozen=True)
class ChunkedProgram:
    """Compiled init (None when resuming) and one compiled chunk per distinct chunk size,
    each `(state, hps, fitness) -> (state, hps, fitness, metrics, pbt_log or None)`."""

    placement: Placement
    init: Callable | None
    chunks: dict[int, Callable]
    chunk_updates: int
    num_updates: int
    compile_s: float
    pbt: PBTPlan | None = None


def compile_chunked(
    trainer: Trainer,
    population: Population,
    chunk_updates: int,
    updates_done: int = 0,
    placement: Placement = LOCAL_RUNS,
    pbt: PBTPlan | None = None,
) -> ChunkedProgram:
    """Compile init (unless `updates_done > 0`) and the chunk programs; time it all. With
    `pbt`, the chunks run population-based training (`purejaxppo.runs.pbt`)."""
    num_updates = trainer.config.num_updates
    sizes = chunk_sizes(num_updates, chunk_updates, updates_done)
    num_runs = population.num_runs
    keys = place_runs(placement, population.keys, num_runs)
    hps = place_runs(placement, population.hyperparams, num_runs)
    init, compile_s = None, 0.0
    if updates_done == 0:
        compiled = compile_trainer_program(trainer, trainer.init, (keys, hps), placement)
        init, compile_s = compiled.program, compiled.compile_s
    # jit's abstract output carries the placement's shardings, which the chunks are built for.
    single, start = trainer.tuning.single_run_unbatched, time.perf_counter()
    abstract_state = jax.eval_shape(
        jax.jit(placement.map(trainer.init, single_run_unbatched=single)), keys, hps
    )
    compile_s += time.perf_counter() - start  # tracing, counted as in the programs' times
    chunks = {}
    for size in sorted(set(sizes)):
        compiled, chunks[size] = compile_chunk(
            trainer, placement, pbt, num_runs, size, (abstract_state, hps)
        )
        compile_s += compiled.compile_s
    return ChunkedProgram(placement, init, chunks, chunk_updates, num_updates, compile_s, pbt)


def compile_chunk(
    trainer: Trainer,
    placement: Placement,
    pbt: PBTPlan | None,
    num_runs: int,
    size: int,
    example_args: tuple[TrainState, Hyperparams],
) -> tuple[CompiledRuns, Callable]:
    """One chunk of `size` updates, compiled, and it called as every chunk is called."""
    if pbt is None:

        def run_chunk(state: TrainState, hp: Hyperparams):
            return trainer.run_updates(hp, state, size)

        compiled = compile_trainer_program(
            trainer, run_chunk, example_args, placement, donate_argnums=(0,)
        )

        def plain(state: TrainState, hps: Hyperparams, fitness: Any) -> tuple:
            state, metrics = compiled.program(state, hps)
            return state, hps, fitness, metrics, None

        return compiled, plain
    fitness = place_runs(placement, initial_fitness(num_runs), num_runs)
    compiled = compile_population_program(
        pbt_chunk(trainer, pbt, num_runs, size, placement.map),
        (*example_args, fitness),
        donate_argnums=(0, 1, 2),
        compiler_options=trainer.tuning.compiler_options_dict(),
    )
    return compiled, compiled.program


def abstract_train_state(trainer: Trainer, population: Population) -> TrainState:
    """Shapes and dtypes of the population's state `[R, ...]` (no padding), on this
    process's first device: the form checkpoints store and restore, whatever the mesh."""
    abstract = jax.eval_shape(jax.vmap(trainer.init), population.keys, population.hyperparams)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)


def unpadded_state(placement: Placement, state: TrainState, num_runs: int) -> TrainState:
    """The chunks' state without its padding runs (every process must call it)."""
    if placement.padded(num_runs) == num_runs:
        return state
    return jax.jit(lambda s: unpad_runs(s, num_runs))(state)


def stop_agreed(stop_requested: Callable[[], int]) -> int:
    """The stop code every process agrees on: the largest of their `stop_requested()`
    (0 or False: go on; a signal number, or True, to stop), a collective when there are
    several processes, so that all stop at the same chunk and for the same reason."""
    return agreed_stop_code(int(stop_requested()))


def start_run(program: ChunkedProgram, population: Population, resume: Any) -> ChunkedRun:
    """The run before its first chunk: fresh from the compiled init, or from `resume`
    (a `ResumePoint`, or a `(state, metrics, updates_done)` tuple)."""
    placement, num_runs = program.placement, population.num_runs
    if resume is None:
        if program.init is None:
            raise ValueError("this program was compiled to resume: pass resume=(...)")
        resume = ResumePoint(None, empty_metrics(num_runs), 0)
    resume = ResumePoint(*resume)
    hps = population.hyperparams if resume.hyperparams is None else resume.hyperparams
    hps = place_runs(placement, hps, num_runs)
    state = resume.state
    if state is None:
        state = program.init(place_runs(placement, population.keys, num_runs), hps)
    fitness = None
    if program.pbt is not None:
        fitness = initial_fitness(num_runs) if resume.fitness is None else resume.fitness
        fitness = place_runs(placement, np.asarray(fitness, np.float32), num_runs)
    parts = [] if resume.pbt_log is None else [resume.pbt_log]
    timing = Timing(program.compile_s, 0.0)
    return ChunkedRun(state, [resume.metrics], resume.updates_done, timing, hps, fitness, parts)


def run_chunked(
    program: ChunkedProgram,
    population: Population,
    *,
    resume: Any = None,
    on_chunk: Callable[[ChunkedRun, ChunkDone], None] | None = None,
    stop_requested: Callable[[], int] = lambda: 0,
    hyperparams_at: Callable[[int], Hyperparams | None] | None = None,
) -> ChunkedRun:
    """Run the chunks of `program`. `resume` (a `ResumePoint`, or `(state, metrics,
    updates_done)`) continues a run. `on_chunk(run, done)` is called after each chunk.
    `stop_requested()` is asked (and agreed over processes) before each chunk: nonzero
    stops the run, and `run.stop_code` keeps the agreed value.
    `hyperparams_at(updates_done)`, if given, is asked before each chunk for the host `[R]`
    hyperparameters to train it with (None: keep the current ones)."""
    placement, num_runs = program.placement, population.num_runs
    start = time.perf_counter()
    run = start_run(program, population, resume)
    sizes = chunk_sizes(program.num_updates, program.chunk_updates, run.updates_done)
    missing = set(sizes) - set(program.chunks)
    if missing:
        raise ValueError(f"chunks of {sorted(missing)} updates were not compiled for this run")
    session_updates = 0
    for size in sizes:
        run.stop_code = stop_agreed(stop_requested)
        if run.stop_code:
            run.stopped = True
            break
        scheduled = None if hyperparams_at is None else hyperparams_at(run.updates_done)
        if scheduled is not None:
            run.hyperparams = place_runs(placement, scheduled, num_runs)
        run.state, run.hyperparams, run.fitness, chunk_metrics, log = program.chunks[size](
            run.state, run.hyperparams, run.fitness
        )
        chunk_metrics = runs_to_host(placement, chunk_metrics, num_runs)
        run.metric_parts.append(chunk_metrics)
        if log is not None:
            log = log_to_host(placement, log, num_runs)
            run.pbt_parts.append(log)
        run.updates_done += size
        session_updates += size
        run.timing = Timing(program.compile_s, time.perf_counter() - start)
        if on_chunk is not None:
            done = ChunkDone(
                run.updates_done, program.num_updates, chunk_metrics, run.timing.run_s,
                session_updates, log,
            )  # fmt: skip
            on_chunk(run, done)
    jax.block_until_ready(run.state)
    run.timing = Timing(program.compile_s, time.perf_counter() - start)
    return run


def train_chunked(
    trainer: Trainer,
    population: Population,
    chunk_updates: int,
    *,
    resume: Any = None,
    placement: Placement = LOCAL_RUNS,
    on_chunk: Callable[[ChunkedRun, ChunkDone], None] | None = None,
    stop_requested: Callable[[], int] = lambda: 0,
) -> ChunkedRun:
    """Compile and run: `population` in chunks of `chunk_updates` updates (the last may be
    shorter). `resume` (a `ResumePoint` or `(state, metrics, updates_done)`) continues a
    run. (Population-based training: `compile_chunked(..., pbt=)`, or the session.)"""
    updates_done = 0 if resume is None else resume[2]
    program = compile_chunked(trainer, population, chunk_updates, updates_done, placement)
    return run_chunked(
        program, population, resume=resume, on_chunk=on_chunk, stop_requested=stop_requested
    )
