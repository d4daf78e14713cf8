"""One way to compile a per-run function for a population of R runs.

`compile_for_runs` maps the function over the run axis (`Placement.map`: `vmap`, or
`shard_map` of it over a mesh), jits it with the given XLA options, lowers it for example
arguments and compiles it with Python's cyclic garbage collector paused (tracing makes many
short-lived objects whose collections only cost time), then checks the program's memory
against what is free. `compile_trainer_program` does so with the trainer's backend tuning
(`purejaxppo.ppo.tuning`). The fused call, the chunked loop, the benchmark and the profile
scripts all compile through here.

`map_over_runs` is `jax.vmap` over a leading run axis, except that where asked a single run
is traced without it: the same computation without `vmap`'s batching of every scan, which
traces and compiles faster (measurements: benchmarks/README.md).

This module imports nothing that starts the XLA backend.
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
    # Imported here (also memory_budget below): placement and this module must stay
    # importable before a multi-process run has joined (memory_budget imports gymnax
    # through envs, which starts XLA).

    from purejaxppo.runs.placement import LOCAL_RUNS

    placement = LOCAL_RUNS if placement is None else placement
    mapped = placement.map(fn, single_run_unbatched=single_run_unbatched)
    return compile_population_program(
        mapped, example_args, donate_argnums=donate_argnums, compiler_options=compiler_options
    )


def compile_population_program(
    fn: Callable[..., Any],
    example_args: Sequence[Any],
    *,
    donate_argnums: tuple[int, ...] = (),
    compiler_options: dict[str, Any] | None = None,
) -> CompiledRuns:
    """Compile a function of the whole population (its per-run parts already mapped over
    the run axis, as `compile_for_runs` maps them; population-based training's chunk is
    one): jitted with `compiler_options`, lowered for `example_args`, compiled with the
    garbage collector paused, and checked against the free memory."""
    from purejaxppo.runs.memory_budget import check_compiled_fits

    jitted = jax.jit(fn, donate_argnums=donate_argnums, compiler_options=compiler_options)
    start = time.perf_counter()
    with garbage_collection_paused():
        compiled = jitted.lower(*example_args).compile()
    compile_s = time.perf_counter() - start
    check_compiled_fits(compiled)
    return CompiledRuns(compiled, compile_s)


def compile_trainer_program(
    trainer: Any,
    fn: Callable[..., Any],
    example_args: Sequence[Any],
    placement: Any = None,
    donate_argnums: tuple[int, ...] = (),
) -> CompiledRuns:
    """`compile_for_runs` of one of `trainer`'s per-run programs (its whole training, init,
    a chunk of updates, ...) as its backend tuning says: a single run traced without `vmap`
    where `trainer.tuning.single_run_unbatched`, and `trainer.tuning`'s compiler options."""
    return compile_for_runs(
        fn,
        example_args,
        placement,
        donate_argnums=donate_argnums,
        single_run_unbatched=trainer.tuning.single_run_unbatched,
        compiler_options=trainer.tuning.compiler_options_dict(),
    )
