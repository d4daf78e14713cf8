"""The XLA options the training programs are compiled with, per backend.

On the CPU, LLVM's optimisation level 1 instead of XLA's default 3: the cartpole preset's
program traces, lowers and compiles in about 2.7 s instead of 3.8 s (one process, with
the flat optimizer; XLA's own part 2.2-2.6 s instead of 3.0-3.3 s), while its run time
stays within the noise of this project's 2-core CPU (measured in one process against
level 3 at 1 x 4, 16 x 4 and 1 x 2048 envs, and for the pendulum and breakout-minatar
presets; the README's Performance section). Level 0 is not worth it: the env-only program
alone runs 1.7-4.8x slower. Accelerators keep XLA's defaults.

Python's cyclic garbage collector is paused while a program is traced, lowered and compiled
(`garbage_collection_paused`): tracing makes many short-lived objects, and the collections
they set off took 0.17 s of the cartpole preset's 0.80 s of tracing and lowering (medians of
5 alternated rounds in one process).

`map_over_runs` is `jax.vmap` over a leading run axis, except that on the CPU a single run
with a small rollout (`unbatched_single_run`) is traced without it: the same computation,
without `vmap`'s batching of every scan. For the cartpole preset (1 run x 4 envs) tracing,
lowering and compiling took 2.48 s instead of 2.86 s (one process, medians of 5 alternated
rounds). Run time without the vmap, one-process A/Bs with either program first: 1 x 4 envs
-0.7%, -1.5% and -15%, 1 x 64 -7% and +3%; but 1 x 512 +5% and +9%, 1 x 2048 +7%, +8%
and +11% (XLA schedules the two programs' kernels in another order), so larger rollouts
keep the vmap.

This module imports nothing that starts the XLA backend: `trainer_compiler_options` asks
for the backend only when a program is built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CPU_COMPILER_OPTIONS: dict[str, int] = {"xla_backend_optimization_level": 1}


def trainer_compiler_options() -> dict[str, int]:
    """Options for `jax.jit(..., compiler_options=...)` of the trainer's programs on the
    default backend (a fresh dict: callers may extend it)."""
    return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}


@contextlib.contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside the block (while a program is traced,
    lowered and compiled), and restore it after, also on an error."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# On the CPU, a single run with at most this many env steps per update is traced without
# `vmap` (the module docstring has the measurements: faster or equal up to 8,192, slower
# from 65,536; the limit between is interpolated, not measured).
CPU_UNBATCHED_SINGLE_RUN_MAX_SAMPLES = 16384


def unbatched_single_run(samples_per_update: int) -> bool:
    """Whether `map_over_runs` should trace a single run of `samples_per_update` env steps per
    update (T x N) without `vmap`: on the CPU up to `CPU_UNBATCHED_SINGLE_RUN_MAX_SAMPLES`;
    elsewhere not (not yet measured on an accelerator)."""
    return (
        jax.default_backend() == "cpu"
        and samples_per_update <= CPU_UNBATCHED_SINGLE_RUN_MAX_SAMPLES
    )


def map_over_runs(
    fn: Callable[..., Any], *, single_run_unbatched: bool = False
) -> Callable[..., Any]:
    """`jax.vmap(fn)`: every argument and output leaf with a leading run axis `[R, ...]`.

    With `single_run_unbatched`, for R = 1 (every argument leaf `[1, ...]`) `fn` is traced on
    the run itself and a run axis is put back on its outputs: the same computation, without
    `vmap`'s batching of every scan in the program, which costs trace time and gives XLA
    more to compile. Rounding may differ from the vmapped program's (XLA fuses and sums the
    two programs differently).
    """
    batched = jax.vmap(fn)

    @functools.wraps(fn)
    def mapped(*args: Any) -> Any:
        leaves = jax.tree.leaves(args)
        one_run = bool(leaves) and all(np.shape(leaf)[:1] == (1,) for leaf in leaves)
        if not (single_run_unbatched and one_run):
            return batched(*args)
        output = fn(*jax.tree.map(lambda leaf: leaf[0], args))
        return jax.tree.map(lambda leaf: jnp.expand_dims(leaf, 0), output)

    return mapped


def map_trainer_over_runs(fn: Callable[..., Any], samples_per_update: int) -> Callable[..., Any]:
    """`map_over_runs` for a program of the trainer whose runs take `samples_per_update` env
    steps per update: a single run traced without `vmap` where `unbatched_single_run`."""
    return map_over_runs(fn, single_run_unbatched=unbatched_single_run(samples_per_update))


@dataclasses.dataclass(frozen=True)
class CompiledRuns:
    """A program compiled for R runs, and the seconds its trace, lowering and compile took."""

    program: Callable[..., Any]
    compile_s: float


def compile_for_runs(
    fn: Callable[..., Any],
    example_args: Sequence[Any],
    placement: Any = None,
    *,
    donate_argnums: tuple[int, ...] = (),
    single_run_unbatched: bool = False,
    compiler_options: dict[str, Any] | None = None,
) -> CompiledRuns:
    """The one way to compile a per-run function for a population: `fn` mapped over the run
    axis by `placement` (default: all runs on the default device), jitted with
    `compiler_options`, lowered for `example_args` (arrays or `ShapeDtypeStruct`s with a
    leading run axis, already padded and placed), compiled with Python's garbage collector
    paused, and checked against the free memory (`check_compiled_fits`)."""
    # Imported here: placement and this module must stay importable before a multi-process
    # run has joined (memory_budget imports gymnax through envs, which starts XLA).
    from purejaxppo.runs.memory_budget import check_compiled_fits
    from purejaxppo.runs.placement import LOCAL_RUNS

    placement = LOCAL_RUNS if placement is None else placement
    mapped = placement.map(fn, single_run_unbatched=single_run_unbatched)
    jitted = jax.jit(mapped, donate_argnums=donate_argnums, compiler_options=compiler_options)
    start = time.perf_counter()
    with garbage_collection_paused():
        compiled = jitted.lower(*example_args).compile()
    compile_s = time.perf_counter() - start
    check_compiled_fits(compiled)
    return CompiledRuns(compiled, compile_s)
