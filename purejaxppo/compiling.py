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

This module imports nothing that starts the XLA backend: `trainer_compiler_options` asks
for the backend only when a program is built.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import jax

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
