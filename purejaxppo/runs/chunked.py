"""Long runs in chunks: one compiled chunk of K updates, driven by a host loop.

    init ─► chunk(K) ─► chunk(K) ─► ... ─► chunk(remainder)
              │ metrics [R, K] to the host; callbacks: progress, logs, checkpoints, eval

A chunk is the population strategy's program (`purejaxppo.runs.strategy`): for independent
runs `run_updates(trainer, hp, state, K)` mapped over the run axis, so K chunks of an update
each give the same state and metrics, bit for bit, as one call of `train` (tested). The
state stays on the device between chunks and is donated to the next chunk, with every run's
hyperparameters and the strategy's carry; only the chunk's metrics `[R, K]` and the
strategy's log come back to the host. Between two chunks the loop asks `stop_requested()`,
so a SIGINT/SIGTERM handler (`purejaxppo.runs.stop`) can stop it at a chunk boundary.

The run axis is placed and mapped by a `Placement` (`purejaxppo.runs.placement`): all runs
on the default device, or split over a device mesh; every program is compiled by
`compile_program`.
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
from purejaxppo.runs.compile import compile_program, trainer_program
from purejaxppo.runs.independent import IndependentRuns
from purejaxppo.runs.placement import (
    LOCAL_RUNS,
    Placement,
    place_runs,
    runs_to_host,
    unpad_runs,
)
from purejaxppo.runs.population import Population, Timing
from purejaxppo.runs.processes import agreed_stop_code
from purejaxppo.runs.strategy import Carried, ChunkCall, PopulationStrategy


@dataclasses.dataclass(frozen=True)
class ChunkDone:
    """What the loop reports after each chunk."""

    updates_done: int  # updates finished by every run so far
    num_updates: int
    chunk_metrics: Metrics  # this chunk's metrics, numpy [R, k]
    run_s: float  # seconds spent running chunks so far (this session)
    session_updates: int  # updates run in this session (excludes restored ones)
    log: Any = None  # this chunk's strategy log on the host, steps first (None: none)


class ResumePoint(NamedTuple):
    """Where a chunked run continues from."""

    state: TrainState  # placed as the program takes it
    metrics: Metrics  # numpy [R, updates_done]
    updates_done: int
    carried: Carried | None = None  # the strategy's values (None: the population's, fresh)


@dataclasses.dataclass
class ChunkedRun:
    """The state of a chunked run: `metrics` (numpy `[R, updates_done]`) grows by chunks,
    and the strategy's `log` (numpy, steps first) by its steps."""

    state: TrainState  # on the device(s), run axis padded
    metric_parts: list[Metrics]
    updates_done: int
    timing: Timing
    hyperparams: Hyperparams  # every run's current values, placed (a strategy may change them)
    carry: Any = None  # the strategy's carry, placed (None: it carries nothing)
    log_parts: list[Any] = dataclasses.field(default_factory=list)
    stopped: bool = False  # True if `stop_requested` ended it before num_updates
    stop_code: int = 0  # the agreed `stop_requested()` that stopped it (a signal number)

    @property
    def metrics(self) -> Metrics:
        if len(self.metric_parts) > 1:
            self.metric_parts[:] = [concat_steps(self.metric_parts, axis=-1)]
        return self.metric_parts[0]

    @property
    def log(self) -> Any:
        """The strategy's log so far (None: it logs nothing)."""
        if len(self.log_parts) > 1:
            self.log_parts[:] = [concat_steps(self.log_parts, axis=0)]
        return self.log_parts[0] if self.log_parts else None


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


def concat_steps(parts: Sequence[Any], axis: int) -> Any:
    """Numpy trees joined along their update (metrics: last) or step (logs: first) axis."""
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *parts)


@dataclasses.dataclass(frozen=True)
class ChunkedProgram:
    """Compiled init (None when resuming) and one compiled chunk per distinct chunk size,
    each `(state, hps, carry) -> (state, hps, carry, metrics, log)` (`ChunkCall`)."""

    placement: Placement
    strategy: PopulationStrategy
    init: Callable | None
    chunks: dict[int, ChunkCall]
    chunk_updates: int
    num_updates: int
    compile_s: float


def compile_chunked(
    trainer: Trainer,
    population: Population,
    chunk_updates: int,
    updates_done: int = 0,
    placement: Placement = LOCAL_RUNS,
    strategy: PopulationStrategy | None = None,
) -> ChunkedProgram:
    """Compile init (unless `updates_done > 0`) and the chunk programs of `strategy`
    (default: independent runs); time it all."""
    strategy = IndependentRuns() if strategy is None else strategy
    num_updates = trainer.config.num_updates
    sizes = chunk_sizes(num_updates, chunk_updates, updates_done)
    num_runs = population.num_runs
    keys = place_runs(placement, population.keys, num_runs)
    hps = place_runs(placement, population.hyperparams, num_runs)
    init, compile_s = None, 0.0
    init_runs = trainer_program(trainer, trainer.init, placement)
    if updates_done == 0:
        compiled = compile_program(
            init_runs, (keys, hps), compiler_options=trainer.tuning.compiler_options_dict()
        )
        init, compile_s = compiled.program, compiled.compile_s
    # jit's abstract output carries the placement's shardings, which the chunks are built for.
    start = time.perf_counter()
    abstract_state = jax.eval_shape(jax.jit(init_runs), keys, hps)
    compile_s += time.perf_counter() - start  # tracing, counted as in the programs' times
    chunks = {}
    for size in sorted(set(sizes)):
        chunks[size], seconds = strategy.compile_chunk(
            trainer, placement, num_runs, size, (abstract_state, hps)
        )
        compile_s += seconds
    return ChunkedProgram(placement, strategy, init, chunks, chunk_updates, num_updates, compile_s)


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


def start_run(
    program: ChunkedProgram, population: Population, resume: ResumePoint | None
) -> ChunkedRun:
    """The run before its first chunk: fresh from the compiled init, or from `resume`."""
    placement, num_runs, strategy = program.placement, population.num_runs, program.strategy
    if resume is None:
        if program.init is None:
            raise ValueError("this program was compiled to resume: pass resume=ResumePoint(...)")
        resume = ResumePoint(None, empty_metrics(num_runs), 0)
    carried = resume.carried
    if carried is None:
        carried = Carried(None, strategy.initial_carry(num_runs), None)
    hyperparams = population.hyperparams if carried.hyperparams is None else carried.hyperparams
    hps = place_runs(placement, hyperparams, num_runs)
    state = resume.state
    if state is None:
        state = program.init(place_runs(placement, population.keys, num_runs), hps)
    carry = None if carried.carry is None else place_runs(placement, carried.carry, num_runs)
    logs = [] if carried.log is None else [carried.log]
    timing = Timing(program.compile_s, 0.0)
    return ChunkedRun(state, [resume.metrics], resume.updates_done, timing, hps, carry, logs)


def run_chunked(
    program: ChunkedProgram,
    population: Population,
    *,
    resume: ResumePoint | None = None,
    on_chunk: Callable[[ChunkedRun, ChunkDone], None] | None = None,
    stop_requested: Callable[[], int] = lambda: 0,
    hyperparams_at: Callable[[int], Hyperparams | None] | None = None,
) -> ChunkedRun:
    """Run the chunks of `program`; `resume` continues a run. `on_chunk(run, done)` is
    called after each chunk. `stop_requested()` is asked (and agreed over processes) before
    each chunk: nonzero stops the run, and `run.stop_code` keeps the agreed value.
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
        changed = None if hyperparams_at is None else hyperparams_at(run.updates_done)
        if changed is not None:
            run.hyperparams = place_runs(placement, changed, num_runs)
        run.state, run.hyperparams, run.carry, chunk_metrics, log = program.chunks[size](
            run.state, run.hyperparams, run.carry
        )
        chunk_metrics = runs_to_host(placement, chunk_metrics, num_runs)
        run.metric_parts.append(chunk_metrics)
        log = program.strategy.log_to_host(placement, log, num_runs)
        if log is not None:
            run.log_parts.append(log)
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


def carried_on_host(placement: Placement, run: ChunkedRun, num_runs: int) -> Carried:
    """The strategy's values of `run` on the host (every process must call it)."""
    hyperparams = runs_to_host(placement, run.hyperparams, num_runs)
    carry = None if run.carry is None else runs_to_host(placement, run.carry, num_runs)
    return Carried(hyperparams, carry, run.log)
