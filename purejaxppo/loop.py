"""Long runs in chunks: one compiled chunk of K updates, driven by a host loop.

    init ─► chunk(K) ─► chunk(K) ─► ... ─► chunk(remainder)
              │ metrics [R, K] to the host; callbacks: progress, logs, checkpoints, eval

`chunk` is `run_updates(trainer, hp, state, K)` mapped over the run axis, so K chunks of an
update each give the same state and metrics, bit for bit, as one call of `train` (tested).
The state stays on the device between chunks and is donated to the next chunk; only the
chunk's metrics `[R, K]` come back to the host. Between two chunks the loop asks
`stop_requested()`, so a SIGINT/SIGTERM handler can stop it at a chunk boundary.

The run axis is placed and mapped by a `RunAxis`: `LOCAL_RUNS` (`jit(vmap)` on the default
device) or a sharded one over a device mesh (`purejaxppo.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from purejaxppo.config import ConfigError, Hyperparams
from purejaxppo.memory import check_compiled_fits
from purejaxppo.population import Population, Timing
from purejaxppo.train import Metrics, Trainer, TrainState


class RunAxis(Protocol):
    """How per-run functions are mapped over the run axis and where the arrays live."""

    def padded(self, num_runs: int) -> int:
        """The run count the mapped functions take (num_runs, or more for even shards)."""

    def put(self, tree: Any) -> Any:
        """Place a pytree with a leading run axis (already padded) for the mapped functions."""

    def map(self, fn: Callable, donate_argnums: tuple[int, ...] = ()) -> Callable:
        """jit of `fn` vmapped over the leading run axis of every argument and output."""

    def to_host(self, tree: Any) -> Any:
        """numpy copies (on every process) of a pytree with a leading run axis."""


@dataclasses.dataclass(frozen=True)
class LocalRuns:
    """All runs on the default device: `jit(vmap(fn))`."""

    def padded(self, num_runs: int) -> int:
        return num_runs

    def put(self, tree: Any) -> Any:
        return tree

    def map(self, fn: Callable, donate_argnums: tuple[int, ...] = ()) -> Callable:
        return jax.jit(jax.vmap(fn), donate_argnums=donate_argnums)

    def to_host(self, tree: Any) -> Any:
        return jax.tree.map(np.asarray, tree)


LOCAL_RUNS = LocalRuns()


@dataclasses.dataclass(frozen=True)
class ChunkDone:
    """What the loop reports after each chunk."""

    updates_done: int  # updates finished by every run so far
    num_updates: int
    chunk_metrics: Metrics  # this chunk's metrics, numpy [R, k]
    run_s: float  # seconds spent running chunks so far (this session)
    session_updates: int  # updates run in this session (excludes restored ones)


@dataclasses.dataclass
class ChunkedRun:
    """The state of a chunked run: `metrics` (numpy `[R, updates_done]`) grows by chunks."""

    state: TrainState  # on the device(s), run axis padded
    metric_parts: list[Metrics]
    updates_done: int
    timing: Timing
    stopped: bool = False  # True if `stop_requested` ended it before num_updates

    @property
    def metrics(self) -> Metrics:
        if len(self.metric_parts) > 1:
            self.metric_parts[:] = [concat_metrics(self.metric_parts)]
        return self.metric_parts[0]


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
    divisors = [d for d in range(1, num_updates + 1) if num_updates % d == 0]
    best = min(divisors, key=lambda d: abs(math.log(d / target)))
    return best if target / 2 <= best <= target * 2 else target


def empty_metrics(num_runs: int) -> Metrics:
    """Metrics of zero updates: `[R, 0]` numpy arrays of the right dtypes."""
    dtypes = {"episodes": np.int32}
    return Metrics(
        *(np.zeros((num_runs, 0), dtypes.get(name, np.float32)) for name in Metrics._fields)
    )


def concat_metrics(parts: Sequence[Metrics]) -> Metrics:
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=-1), *parts)


def pad_runs(tree: Any, num_padded: int) -> Any:
    """Repeat the last run along axis 0 of every leaf up to `num_padded` runs."""

    def pad(x: jax.Array) -> jax.Array:
        extra = num_padded - x.shape[0]
        if extra == 0:
            return x
        return jax.numpy.concatenate([x, jax.numpy.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def unpad_runs(tree: Any, num_runs: int) -> Any:
    return jax.tree.map(lambda x: x[:num_runs], tree)


def compile_chunked(
    trainer: Trainer,
    population: Population,
    sizes: Sequence[int],
    runs: RunAxis = LOCAL_RUNS,
    need_init: bool = True,
) -> tuple[Callable | None, dict[int, Callable], float]:
    """Compile init (if needed) and one chunk program per distinct size; seconds it took."""
    num_padded = runs.padded(population.num_runs)
    keys = runs.put(pad_runs(population.keys, num_padded))
    hps = runs.put(pad_runs(population.hyperparams, num_padded))
    start = time.perf_counter()
    init_fn = runs.map(trainer.init)
    init = init_fn.lower(keys, hps).compile() if need_init else None
    abstract_state = jax.eval_shape(init_fn, keys, hps)
    chunks = {}
    for size in sorted(set(sizes)):

        def run_chunk(state: TrainState, hp: Hyperparams, size: int = size):
            return trainer.run_updates(state, hp, size)

        compiled = runs.map(run_chunk, donate_argnums=(0,)).lower(abstract_state, hps).compile()
        check_compiled_fits(compiled)
        chunks[size] = compiled
    return init, chunks, time.perf_counter() - start


def train_chunked(
    trainer: Trainer,
    population: Population,
    chunk_updates: int,
    *,
    resume: tuple[TrainState, Metrics, int] | None = None,
    runs: RunAxis = LOCAL_RUNS,
    on_chunk: Callable[[ChunkedRun, ChunkDone], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> ChunkedRun:
    """Train `population` in chunks of `chunk_updates` updates (the last may be shorter).

    `resume=(state, metrics, updates_done)` continues a run: `state` with a padded run axis
    as `runs` takes it (e.g. restored from a checkpoint), `metrics` numpy `[R, updates_done]`.
    `on_chunk(run, done)` is called after each chunk with the run so far.
    """
    num_updates = trainer.config.num_updates
    updates_done = 0 if resume is None else resume[2]
    sizes = chunk_sizes(num_updates, chunk_updates, updates_done)
    init, chunks, compile_s = compile_chunked(
        trainer, population, sizes, runs, need_init=resume is None
    )
    num_padded = runs.padded(population.num_runs)
    hps = runs.put(pad_runs(population.hyperparams, num_padded))
    start = time.perf_counter()
    if resume is None:
        state = init(runs.put(pad_runs(population.keys, num_padded)), hps)
        metrics = empty_metrics(population.num_runs)
    else:
        state, metrics = resume[0], resume[1]
    run = ChunkedRun(state, [metrics], updates_done, Timing(compile_s, 0.0))
    session_updates = 0
    for size in sizes:
        if stop_requested():
            run.stopped = True
            break
        state, chunk_metrics = chunks[size](state, hps)
        chunk_metrics = unpad_runs(runs.to_host(chunk_metrics), population.num_runs)
        run.metric_parts.append(chunk_metrics)
        updates_done += size
        session_updates += size
        run.state, run.updates_done = state, updates_done
        run.timing = Timing(compile_s, time.perf_counter() - start)
        if on_chunk is not None:
            on_chunk(
                run,
                ChunkDone(
                    updates_done, num_updates, chunk_metrics, run.timing.run_s, session_updates
                ),
            )
    jax.block_until_ready(run.state)
    run.timing = Timing(compile_s, time.perf_counter() - start)
    return run
