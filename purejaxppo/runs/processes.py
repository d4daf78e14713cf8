"""Joining a run of several processes (`jax.distributed`), before anything starts XLA.

`initialize_distributed` must run before anything starts the XLA backend, and importing
gymnax does (gymnax 1.0.1 builds a jax array at import, in environments/misc/frozen_lake.py).
So this module imports jax and the leaf `purejaxppo.errors` alone (a test checks it), and
`import purejaxppo` loads everything else only on first use: join the run first, then
build the trainer.
"""

from __future__ import annotations

import os
from typing import Any

import jax
from jax._src import xla_bridge  # backends_are_initialized: no public equivalent

from purejaxppo.errors import ConfigError

ENV_COORDINATOR = "PUREJAXPPO_COORDINATOR"
ENV_NUM_PROCESSES = "PUREJAXPPO_NUM_PROCESSES"
ENV_PROCESS_ID = "PUREJAXPPO_PROCESS_ID"
# jax's own SLURM detection (jax._src.clusters.slurm_cluster) needs all of these.
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> tuple[int, int]:
    """Join a multi-process run; return `(process_index, process_count)`.

    Arguments left None are read from `PUREJAXPPO_COORDINATOR` (host:port of process 0),
    `PUREJAXPPO_NUM_PROCESSES` and `PUREJAXPPO_PROCESS_ID`. With none of the three given,
    this is a single process (nothing to do) unless it runs as a SLURM task of a
    multi-task step, where `jax.distributed.initialize()` detects everything itself.
    Must be called before anything starts the XLA backend (any JAX computation, or
    importing gymnax: see the module docstring). On CPU, processes talk over gloo (TCP).
    """
    address = coordinator_address if coordinator_address is not None else env(ENV_COORDINATOR)
    count = num_processes if num_processes is not None else env_int(ENV_NUM_PROCESSES)
    index = process_id if process_id is not None else env_int(ENV_PROCESS_ID)
    given = {"coordinator_address": address, "num_processes": count, "process_id": index}
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    if all(v is None for v in given.values()):
        if not in_slurm_step():
            return 0, 1
        check_backend_not_started()
        use_gloo_on_cpu()
        keep_signal_handlers()
        jax.distributed.initialize()
        return jax.process_index(), jax.process_count()
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ConfigError(
            f"distributed run: {', '.join(missing)} not given; set all three of "
            f"coordinator_address, num_processes, process_id (or {ENV_COORDINATOR}, "
            f"{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})"
        )
    validate_distributed(address, count, index)
    check_backend_not_started()
    use_gloo_on_cpu()
    keep_signal_handlers()
    jax.distributed.initialize(address, num_processes=count, process_id=index)
    return jax.process_index(), jax.process_count()


def check_backend_not_started() -> None:
    """`RuntimeError` with the likely cause if the XLA backend already exists."""
    if xla_bridge.backends_are_initialized():
        raise RuntimeError(
            "initialize_distributed must be called before anything starts the XLA backend "
            "(any jax computation, jax.devices(), or importing gymnax, e.g. through "
            "purejaxppo.envs.setup / purejaxppo.ppo.trainer / make_train); call it first"
        )


def validate_distributed(address: Any, num_processes: Any, process_id: Any) -> None:
    """`ConfigError` unless address is "host:port", num_processes >= 1, 0 <= id < count."""
    if not is_int(num_processes) or num_processes < 1:
        raise ConfigError(f"num_processes must be a positive integer, got {num_processes!r}")
    if not is_int(process_id) or not 0 <= process_id < num_processes:
        raise ConfigError(
            f"process_id must be an integer in [0, {num_processes}), got {process_id!r}"
        )
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"coordinator_address must be host:port with a port in 1..65535 "
            f"(e.g. 10.0.0.1:12345), got {address!r}"
        )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def env_int(name: str) -> int | None:
    value = env(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def in_slurm_step() -> bool:
    """True inside a SLURM job step with more than one task (`srun -n N`, N > 1)."""
    if not all(name in os.environ for name in SLURM_VARS):
        return False
    try:
        return int(os.environ["SLURM_NTASKS"]) > 1
    except ValueError:
        return False


def use_gloo_on_cpu() -> None:
    """Cross-process collectives on CPU go over gloo (must be set before initialize).

    Only affects the CPU backend; an explicit other choice (e.g. "mpi") is kept.
    """
    if jax.config.jax_cpu_collectives_implementation in (None, "gloo"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def keep_signal_handlers() -> None:
    """jax's preemption service replaces the process's SIGTERM handler with its own (which
    only logs) when the run is joined; the chunk loop already agrees on stops over every
    process (`runs.chunked.stop_agreed`), so the service is left off and SIGTERM stays with
    `runs.stop` (must be set before initialize)."""
    jax.config.update("jax_enable_preemption_service", False)


def several_processes() -> bool:
    """Whether this process is one of several (`jax.distributed` joined, more than one)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def every_process_agrees(ok: bool) -> bool:
    """Whether `ok` is true on every process of the run (a collective when there are several;
    every process must call it)."""
    if not several_processes():
        return ok
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(jnp.asarray([int(ok)], jnp.int32))
    return bool(jnp.all(jnp.asarray(flags) == 1))


def agreed_stop_code(local: int) -> int:
    """The largest of every process's stop code (0: go on; else why to stop, e.g. a signal
    number), so that a stop asked of any process stops them all, for the same reason."""
    if not several_processes():
        return local
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    codes = multihost_utils.process_allgather(jnp.asarray([local], jnp.int32))
    return int(jnp.max(jnp.asarray(codes)))
