"""Fast compiles for tests that check what a program computes (sharding, padding, processes,
files), not its speed or its exact float rounding: on the CPU, XLA's backend optimisations
off compile the small training programs about 5x faster (measured: 1 s against 5 s).

The rounding differs from the command line's: with these options a run chunked otherwise
(`--chunk-updates`) can differ in its last bits, which the production options do not (a PBT
run and its rerun from config.json, in chunks of 4 and of 2, measured). So they are for
tests that compare nothing bit for bit with a run compiled or chunked differently.

Imports nothing that starts the XLA backend: a multi-process worker imports this first.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

FAST_CPU_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("xla_backend_optimization_level", 0),
    ("xla_cpu_use_fusion_emitters", False),
    ("xla_llvm_disable_expensive_passes", True),
)


def fast_tuning(config: Any) -> Any:
    """`config`'s default `Tuning` on this backend, on the CPU with `FAST_CPU_OPTIONS` as its
    compiler options (every program of a trainer made with it compiles with them)."""
    import jax

    from purejaxppo.ppo.tuning import Tuning

    tuning = Tuning.for_backend(jax.default_backend(), config.batch_size)
    if tuning.backend != "cpu":
        return tuning
    return dataclasses.replace(tuning, compiler_options=FAST_CPU_OPTIONS)


@contextlib.contextmanager
def trainers_compiled_fast() -> Iterator[None]:
    """Inside, every trainer made with the default tuning (as the command line makes its
    own) compiles with `FAST_CPU_OPTIONS` on the CPU. Not for a run compared bit for bit
    with one compiled outside or chunked otherwise, nor for learning that must reach a
    return."""
    import pytest

    import purejaxppo.ppo.tuning

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(purejaxppo.ppo.tuning, "CPU_COMPILER_OPTIONS", FAST_CPU_OPTIONS)
        yield


# The same for a `purejaxppo` subprocess, through XLA_FLAGS (the trainer's own compiler
# options still set the optimisation level of its programs; the other two halve their compile).
FAST_CPU_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_llvm_disable_expensive_passes=true",
)


def fast_cpu_env(env: dict[str, str], devices: int = 1) -> dict[str, str]:
    """`env` for a CPU subprocess with `devices` host devices whose programs compile fast."""
    flags = [f"--xla_force_host_platform_device_count={devices}"] if devices > 1 else []
    return {**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": " ".join([*flags, *FAST_CPU_FLAGS])}
