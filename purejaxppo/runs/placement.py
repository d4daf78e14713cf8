"""Where a population's runs live: the run axis on one device, or split over a device mesh.

Runs are independent, so R runs spread over D devices by cutting the run axis into D equal
blocks: each device trains its block with `jax.vmap` inside `jax.shard_map`, and nothing
crosses devices until the results are brought back to the host. The same code runs on one
process or many (`purejaxppo.runs.processes`): `jax.devices()` then spans every process,
and each process feeds and computes only its own devices' blocks.

A run count that does not divide the device count is padded with copies of the last run
(`pad_runs`); the copies are computed like any other run and then dropped (`unpad_runs`),
so at most D - 1 runs of compute are wasted. Which runs a run shares a device with does not
change its result beyond float32 rounding (a block of 1 or 2 runs is another program for
XLA than a block of 6, and may sum in another order).

With several processes every process runs the same program on the same population, so
every process holds the full, identical host value of every input; `put` takes from it the
blocks of the local devices, and `to_host` gives every process the full results.

`Placement` is the only place that knows about meshes, padding and processes: compiling
(`purejaxppo.runs.compile`), the chunked loop and the session take one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from purejaxppo.errors import ConfigError

RUN_AXIS = "runs"


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


# --- padding ----------------------------------------------------------------------------


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


# --- a mesh over the run axis -----------------------------------------------------------


def run_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "runs" over `devices` (default `jax.devices()`: every process's)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (RUN_AXIS,))


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


def shard_over_runs(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """`shard_map(vmap(fn))`: every input and output leaf `[R, ...]` split on axis 0.

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

    return sharded


def put_runs(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf `[R, ...]` on `mesh`, split along axis 0 (R divisible by D).

    Each process must hold the full, identical host value; it only copies the blocks of
    its own devices. Typed PRNG keys travel as their `key_data` and are re-wrapped.
    """
    check_run_axis(tree, mesh.size)
    sharding = NamedSharding(mesh, P(RUN_AXIS))
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


# --- placements -------------------------------------------------------------------------


class Placement(Protocol):
    """How per-run functions are mapped over the run axis and where its arrays live."""

    @property
    def num_devices(self) -> int:
        """Devices the run axis is split over."""

    def padded(self, num_runs: int) -> int:
        """The run count the mapped functions take (num_runs, or more for even shards)."""

    def put(self, tree: Any) -> Any:
        """Place a pytree with a leading run axis (already padded) for the mapped functions."""

    def map(self, fn: Callable[..., Any], *, single_run_unbatched: bool = False) -> Callable:
        """`fn` mapped over the leading run axis of every argument and output (not jitted:
        `compile_program` does that); a single run traced without vmap where
        `single_run_unbatched` and the placement allows it."""

    def to_host(self, tree: Any) -> Any:
        """numpy copies (on every process) of a pytree with a leading run axis."""


@dataclasses.dataclass(frozen=True)
class LocalRuns:
    """All runs on the default device: `vmap(fn)` (`map_over_runs`)."""

    num_devices: int = 1

    def padded(self, num_runs: int) -> int:
        return num_runs

    def put(self, tree: Any) -> Any:
        return tree

    def map(self, fn: Callable[..., Any], *, single_run_unbatched: bool = False) -> Callable:
        return map_over_runs(fn, single_run_unbatched=single_run_unbatched)

    def to_host(self, tree: Any) -> Any:
        return to_host(tree)  # one process: numpy copies, typed keys as their key data


LOCAL_RUNS = LocalRuns()


@dataclasses.dataclass(frozen=True)
class MeshRuns:
    """Runs split over the devices of `mesh` (all processes): `shard_map(vmap(fn))`.
    A run count the device count does not divide is padded with copies of the last run."""

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def padded(self, num_runs: int) -> int:
        return padded_run_count(num_runs, self.mesh.size)

    def put(self, tree: Any) -> Any:
        return put_runs(tree, self.mesh)

    def map(self, fn: Callable[..., Any], *, single_run_unbatched: bool = False) -> Callable:
        # Each device's block stays vmapped (a block of one run is not measured).
        return shard_over_runs(fn, self.mesh)

    def to_host(self, tree: Any) -> Any:
        return to_host(tree)


def make_placement(num_devices: int | None = None) -> Placement:
    """All (or the first `num_devices`) devices of all processes; one device: `LOCAL_RUNS`."""
    devices = jax.devices()
    if num_devices is not None:
        if jax.process_count() > 1:
            raise ConfigError("num_devices applies to one process; several use all devices")
        if not 1 <= num_devices <= len(devices):
            raise ConfigError(f"num_devices = {num_devices}: there are {len(devices)} device(s)")
        devices = devices[:num_devices]
    if len(devices) == 1 and jax.process_count() == 1:
        return LOCAL_RUNS
    return MeshRuns(run_mesh(devices))


def place_runs(placement: Placement, tree: Any, num_runs: int) -> Any:
    """A host pytree `[num_runs, ...]` padded and placed for `placement`'s mapped functions."""
    return placement.put(pad_runs(tree, placement.padded(num_runs)))


def runs_to_host(placement: Placement, tree: Any, num_runs: int) -> Any:
    """A placed pytree back on the host (every process), its padding runs dropped."""
    return unpad_runs(placement.to_host(tree), num_runs)
