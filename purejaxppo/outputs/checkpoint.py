"""Checkpoints of a whole population with orbax.

A checkpoint (one per saved update count, under `<out>/checkpoints/<updates>/`) holds

- `state`: the `TrainState` of every run `[R, ...]`: network parameters, optimizer state,
  environment states and observations, episode counters, RNG keys (as raw key data) and the
  update counter; and the metrics so far `[R, updates]`;
- `extra` (population-based training only): the evolved hyperparameters, the last fitness
  and the PBT steps so far (`runs.pbt.pbt_tree`);
- `meta`: the run's document (`runs.spec.run_document`, as in its `config.json`) with the
  format version, the updates done and the evaluations so far.

`restore_checkpoint` checks the stored shapes against the trainer before reading any array,
so a checkpoint of another env or other shapes is refused with a one-line `CheckpointError`;
so is a missing or unreadable one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from purejaxppo.errors import ConfigError
from purejaxppo.ppo.types import Metrics, TrainState

# 4: the metadata is the run's document (`runs.spec.run_document`); 3: the GRU carry is
# named `rnn_state` (format 2 called it `hidden`); 2: the optimizer state is one flat vector
# per moment (`optax.flatten`). Older formats are refused.
FORMAT_VERSION = 4
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, or does not match the run."""


@dataclasses.dataclass(frozen=True)
class Restored:
    state: TrainState  # placed with the shardings of the abstract state given
    metrics: Metrics  # numpy [R, updates_done]
    meta: dict[str, Any]
    extra: dict[str, Any] | None = None  # the `extra` tree saved beside them (PBT's values)

    @property
    def updates_done(self) -> int:
        return int(self.meta["updates_done"])


def checkpoint_dir(out: Path) -> Path:
    return Path(out).absolute() / CHECKPOINT_DIR


def open_manager(out: Path, max_to_keep: int = 2, read_only: bool = False):
    """An orbax `CheckpointManager` for `<out>/checkpoints` keeping the newest `max_to_keep`."""
    if read_only:
        options = ocp.CheckpointManagerOptions(create=False, read_only=True, save_interval_steps=0)
    else:
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(checkpoint_dir(out), options=options, item_handlers=handlers)


@contextlib.contextmanager
def reading_manager(out: Path) -> Iterator[Any]:
    """A read-only manager for `<out>/checkpoints`, closed after the block (orbax's threads
    left open print errors when the process exits)."""
    manager = open_manager(out, read_only=True)
    try:
        yield manager
    finally:
        manager.close()


def storable_state(state: TrainState) -> TrainState:
    """Typed PRNG keys as their raw uint32 data, which orbax stores like any array."""
    return state._replace(key=jax.random.key_data(state.key))


def typed_state(state: TrainState) -> TrainState:
    return state._replace(key=jax.random.wrap_key_data(state.key))


def save_checkpoint(
    manager: Any,
    state: TrainState,
    metrics: Metrics,
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
    wait: bool = True,
) -> None:
    """Save under step `meta["updates_done"]`, with an `extra` tree of arrays if given (what
    population-based training carries); `wait` blocks until it is on disk."""
    meta = {**meta, "format": FORMAT_VERSION}
    tree = {"state": storable_state(state), "metrics": metrics._asdict()}
    if extra is not None:
        tree["extra"] = extra
    manager.save(
        int(meta["updates_done"]),
        args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    if wait:
        manager.wait_until_finished()


def holds_checkpoint(out: Path) -> bool:
    """Whether `out` holds a saved checkpoint: a directory listing, no orbax manager (whose
    opening is a collective over processes)."""
    directory = checkpoint_dir(out)
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def latest_updates(out: Path) -> int | None:
    """The update count of the newest complete checkpoint under `out`, or None."""
    if not checkpoint_dir(out).is_dir():
        return None
    with reading_manager(out) as manager:
        return manager.latest_step()


def read_meta(out: Path) -> dict[str, Any]:
    """The JSON metadata of the newest checkpoint under `out`."""
    step = latest_updates(out)
    if step is None:
        raise CheckpointError(f"no checkpoint under {checkpoint_dir(out)}")
    try:
        with reading_manager(out) as manager:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = meta["meta"]
    except Exception as error:  # orbax raises many types for a damaged directory
        raise CheckpointError(
            f"checkpoint {checkpoint_dir(out) / str(step)} is unreadable: {_first_line(error)}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {checkpoint_dir(out) / str(step)} has format "
            f"{meta.get('format') if isinstance(meta, dict) else None!r}; "
            f"this version reads format {FORMAT_VERSION}"
        )
    return meta


def restore_checkpoint(
    out: Path, abstract_state: TrainState, num_runs: int, abstract_extra: Any = None
) -> Restored:
    """Read the newest checkpoint under `out` into arrays shaped like `abstract_state`
    (a `jax.eval_shape` of the run's init, run axis as the caller places it), and its
    `extra` tree shaped like `abstract_extra` when given."""
    meta = read_meta(out)
    step = int(meta["updates_done"])
    metric_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    metric_dtypes = {"episodes": np.int32}
    abstract = {
        "state": jax.tree.map(_abstract_leaf, storable_abstract(abstract_state)),
        "metrics": {
            name: jax.ShapeDtypeStruct(
                (num_runs, step), metric_dtypes.get(name, np.float32), sharding=metric_device
            )
            for name in Metrics._fields
        },
    }
    if abstract_extra is not None:
        abstract["extra"] = jax.tree.map(_abstract_leaf, abstract_extra)
    with reading_manager(out) as manager:
        check_shapes(manager, step, abstract, out)
        try:
            tree = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )["state"]
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {checkpoint_dir(out) / str(step)} is unreadable: {_first_line(error)}"
            ) from None
    metrics = Metrics(**{k: np.asarray(v) for k, v in tree["metrics"].items()})
    extra = jax.tree.map(np.asarray, tree["extra"]) if "extra" in tree else None
    return Restored(typed_state(tree["state"]), metrics, meta, extra)


def storable_abstract(abstract_state: TrainState) -> TrainState:
    """The abstract state with its key leaf as raw key data (what `save_checkpoint` stores)."""
    key = abstract_state.key
    data = jax.eval_shape(jax.random.key_data, key)
    data = jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(key, "sharding", None))
    return abstract_state._replace(key=data)


def _abstract_leaf(x: Any) -> jax.ShapeDtypeStruct:
    sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(
        jax.local_devices()[0]
    )
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def check_shapes(manager: Any, step: int, abstract: dict[str, Any], out: Path) -> None:
    """Compare the stored array shapes with the expected ones, before reading any data."""
    try:
        stored = manager.item_metadata(step)["state"]
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {checkpoint_dir(out) / str(step)} is unreadable: {_first_line(error)}"
        ) from None
    expected = {
        _path_name(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(abstract)
    }
    found = {
        _path_name(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(stored)
        if hasattr(leaf, "shape")
    }
    for name, shape in expected.items():
        if name not in found:
            raise CheckpointError(
                f"checkpoint {checkpoint_dir(out) / str(step)} does not match this run: "
                f"it has no {name}"
            )
        if found[name] != shape:
            raise CheckpointError(
                f"checkpoint {checkpoint_dir(out) / str(step)} does not match this run: "
                f"{name} is {found[name]}, expected {shape}"
            )


def _path_name(path: tuple) -> str:
    """`state/params/actor/...`: the same name for a NamedTuple field and a dict key."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return "/".join(parts)


def _first_line(error: BaseException, limit: int = 200) -> str:
    """The error's type and first line, without TensorStore's appended spec, at most
    `limit` characters."""
    lines = str(error).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0].strip() if lines else ""
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(error).__name__}: {text}"
