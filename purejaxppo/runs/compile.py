"""The one way to compile a program of a population of R runs.

`compile_program` jits a function of the whole population (its per-run parts mapped over the
run axis by a `Placement`), lowers it for example arguments and compiles it with Python's
cyclic garbage collector paused (tracing makes many short-lived objects whose collections
only cost time), then checks the program's memory against what is free. `trainer_program`
maps one of a trainer's per-run functions as its backend tuning says
(`purejaxppo.ppo.tuning`). The fused call, the chunks of every population strategy, the
evaluation, the benchmark and the profile scripts all compile through here.

This module imports nothing that starts the XLA backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax

from purejaxppo.ppo.trainer import Trainer
from purejaxppo.runs.placement import Placement


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


@dataclasses.dataclass(frozen=True)
class CompiledRuns:
    """A program compiled for R runs, and the seconds its trace, lowering and compile took."""

    program: Callable[..., Any]
    compile_s: float


def compile_program(
    fn: Callable[..., Any],
    example_args: Sequence[Any],
    *,
    donate_argnums: tuple[int, ...] = (),
    compiler_options: dict[str, Any] | None = None,
) -> CompiledRuns:
    """`fn`, a function of the whole population (every argument and output leaf with the
    run axis first, padded and placed), jitted with `compiler_options`, lowered for
    `example_args` (arrays or `ShapeDtypeStruct`s), compiled with the garbage collector
    paused, and checked against the free memory (`check_compiled_fits`)."""
    # Imported here: memory_budget imports gymnax through envs, which starts XLA, and this
    # module must stay importable before a multi-process run has joined.
    from purejaxppo.runs.memory_budget import check_compiled_fits

    jitted = jax.jit(fn, donate_argnums=donate_argnums, compiler_options=compiler_options)
    start = time.perf_counter()
    with garbage_collection_paused():
        compiled = jitted.lower(*example_args).compile()
    compile_s = time.perf_counter() - start
    check_compiled_fits(compiled)
    return CompiledRuns(compiled, compile_s)


def trainer_program(
    trainer: Trainer, fn: Callable[..., Any], placement: Placement
) -> Callable[..., Any]:
    """One of `trainer`'s per-run functions (its whole training, init, a chunk of updates,
    an evaluation) mapped over the run axis by `placement`, as its backend tuning says: a
    single run traced without `vmap` where `trainer.tuning.single_run_unbatched`."""
    return placement.map(fn, single_run_unbatched=trainer.tuning.single_run_unbatched)
