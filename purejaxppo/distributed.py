"""Runs sharded over devices and processes: one mesh axis, "runs", and no communication.

Runs are independent, so R runs spread over D devices by cutting the run axis into D
equal blocks: each device trains its block with `jax.vmap(train)` inside `jax.shard_map`
and nothing crosses devices until the results are brought back to the host. The same
code runs on one process or many (`initialize_distributed`): `jax.devices()` then spans
every process, and each process feeds and computes only its own devices' blocks.

A run count that does not divide the device count is padded with copies of the last run
(`pad_runs`); the copies are computed like any other run and then dropped (`unpad_runs`),
so at most D - 1 runs of compute are wasted. Which runs a run shares a device with does not
change its result beyond float32 rounding (a block of 1 or 2 runs is another program
for XLA than a block of 6, and may sum in another order).

Multi-process use: every process runs the same program on the same population (same
config, seeds and sweep), so every process holds the full, identical host value of every
input; `put_runs` takes from it the blocks of the local devices, and `to_host` gives every
process the full results.

`initialize_distributed` must run before anything starts the XLA backend, and importing
gymnax does (gymnax 1.0.1 builds a jax array at import, in environments/misc/frozen_lake.py).
So this module imports nothing that imports gymnax, and `import purejaxppo` loads its
gymnax-dependent parts (envs, train) only on first use: join the run first, then build
the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import xla_bridge  # backends_are_initialized: no public equivalent
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from purejaxppo.compiling import trainer_compiler_options
from purejaxppo.config import ConfigError

if TYPE_CHECKING:  # not at run time: they import gymnax, which starts the XLA backend
    from purejaxppo.population import Population
    from purejaxppo.train import Trainer, TrainOutput

RUN_AXIS = "runs"
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


# --- mesh and padding -------------------------------------------------------------------


def run_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "runs" over `devices` (default `jax.devices()`: every process's)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (RUN_AXIS,))


def padded_run_count(num_runs: int, num_devices: int) -> int:
    """The smallest multiple of `num_devices` that is at least `num_runs`."""
    if num_runs < 1 or num_devices < 1:
        raise ValueError(f"need num_runs >= 1 and num_devices >= 1, got {num_runs}, {num_devices}")
    return -(-num_runs // num_devices) * num_devices


def run_count(tree: Any) -> int:
    """The common length R of axis 0 (the run axis) of every leaf of `tree`."""
    counts = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(tree)}
    if None in counts:
        raise ValueError("every leaf needs a leading run axis; found a scalar leaf")
    if len(counts) != 1:
        raise ValueError(f"leaves disagree on the run-axis length: {sorted(counts)}")
    return counts.pop()


def pad_runs(tree: Any, num_padded: int) -> Any:
    """Leaves `[R, ...]` -> `[num_padded, ...]`, rows R.. being copies of the last run.

    Works for numpy arrays (stays on the host), jax arrays and typed PRNG key arrays.
    """
    num_runs = run_count(tree)
    if num_padded < num_runs:
        raise ValueError(f"cannot pad {num_runs} runs to fewer ({num_padded})")
    if num_padded == num_runs:
        return tree
    index = np.minimum(np.arange(num_padded), num_runs - 1)
    return jax.tree.map(lambda x: x[index], tree)


def unpad_runs(tree: Any, num_runs: int) -> Any:
    """Leaves `[R_padded, ...]` -> `[num_runs, ...]`: drop the padding runs at the end."""
    return jax.tree.map(lambda x: x[:num_runs], tree)


# --- sharded execution ------------------------------------------------------------------


def check_run_axis(args: Any, num_devices: int) -> int:
    """R, the run-axis length of `args`; `ValueError` unless `num_devices` divides it."""
    num_runs = run_count(args)
    if num_runs % num_devices:
        raise ValueError(
            f"{num_runs} runs cannot be split evenly over {num_devices} devices; "
            f"pad the run axis to {padded_run_count(num_runs, num_devices)} with "
            f"pad_runs(tree, padded_run_count({num_runs}, {num_devices})) and drop the "
            "copies afterwards with unpad_runs"
        )
    return num_runs


def shard_over_runs(
    fn: Callable[..., Any], mesh: Mesh, donate_argnums: int | Sequence[int] = ()
) -> Callable[..., Any]:
    """`jit(shard_map(vmap(fn)))`: every input and output leaf `[R, ...]` split on axis 0.

    Each of the D devices of `mesh` runs `vmap(fn)` on its `[R / D, ...]` block; the body
    has no collectives. R must be a multiple of D (else `ValueError`, raised when the
    function is traced for new shapes): pad with `pad_runs` first.
    """
    spec = P(RUN_AXIS)
    # check_vma=False: the body has no collectives, so the per-axis varying/invariant
    # typing buys nothing, and it would reject `fn`'s scans whose carries start from
    # constants (invariant) and become run-dependent (varying).
    mapped = jax.shard_map(jax.vmap(fn), mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)

    def sharded(*args: Any) -> Any:
        check_run_axis(args, mesh.size)  # shapes are static: this runs at trace time
        return mapped(*args)

    return jax.jit(
        sharded, donate_argnums=donate_argnums, compiler_options=trainer_compiler_options()
    )


def run_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(RUN_AXIS))


def put_runs(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf `[R, ...]` on `mesh`, split along axis 0 (R divisible by D).

    Each process must hold the full, identical host value; it only copies the blocks of
    its own devices. Typed PRNG keys travel as their `key_data` and are re-wrapped.
    """
    check_run_axis(tree, mesh.size)
    sharding = run_sharding(mesh)
    return jax.tree.map(lambda x: put_leaf(x, sharding), tree)


def put_leaf(x: Any, sharding: NamedSharding) -> jax.Array:
    if is_key_array(x):
        data = put_leaf(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def is_key_array(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree: Any) -> Any:
    """numpy copies of the full arrays, on every process (typed keys -> their key_data).

    With several processes the non-addressable parts are gathered (`process_allgather`):
    a collective, so every process must call `to_host` on the same tree.
    """
    multi = jax.process_count() > 1

    def leaf(x: Any) -> np.ndarray:
        if is_key_array(x):
            x = jax.random.key_data(x)
        if multi and isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(leaf, tree)


def train_sharded(
    trainer: Trainer, population: Population, mesh: Mesh | None = None
) -> TrainOutput:
    """Train `population`'s R runs sharded over `mesh` (default: every device).

    Returns the host (numpy) `TrainOutput` with run axis `[R, ...]`, padding removed;
    `state.key` is the key data (uint32 `[R, ...]`). Every process gets the full output.
    """
    mesh = run_mesh() if mesh is None else mesh
    num_runs = population.num_runs
    inputs = pad_runs(
        (population.keys, population.hyperparams), padded_run_count(num_runs, mesh.size)
    )
    output = shard_over_runs(trainer, mesh)(*put_runs(inputs, mesh))
    return unpad_runs(to_host(output), num_runs)


# --- processes --------------------------------------------------------------------------


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
    jax.distributed.initialize(address, num_processes=count, process_id=index)
    return jax.process_index(), jax.process_count()


def check_backend_not_started() -> None:
    """`RuntimeError` with the likely cause if the XLA backend already exists."""
    if xla_bridge.backends_are_initialized():
        raise RuntimeError(
            "initialize_distributed must be called before anything starts the XLA backend "
            "(any jax computation, jax.devices(), or importing gymnax, e.g. through "
            "purejaxppo.envs / purejaxppo.train / make_train); call it first"
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
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


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
