"""Checkpoints of a whole population with orbax.

A checkpoint (one per saved update count, under `<out>/checkpoints/<updates>/`) holds

- `state`: the `TrainState` of every run `[R, ...]`: network parameters, optimizer state,
  environment states and observations, episode counters, RNG keys (as raw key data) and the
  update counter; and the metrics so far `[R, updates]`;
- `extra` (when the population strategy keeps values beside the runs' states, as
  population-based training does): the strategy's `to_checkpoint` tree
  (`runs.strategy.PopulationStrategy`);
- `meta`: the run's document (`runs.document.run_document`, as in its `config.json`) with the
  format version, the updates done and the evaluations so far.

`restore_checkpoint` checks the stored shapes against the trainer before reading any array,
so a checkpoint of another env or other shapes is refused with a one-line `CheckpointError`.
A damaged newest checkpoint is passed over for the newest intact one (`Restored.damaged` says
which were), and one deleted while it was read (a training run keeps only the newest two) is
retried on the newest again. A save that fails (a full disk) removes its temporary directory
and raises a one-line `SaveError` that names the newest complete checkpoint. orbax's own
logs and background-thread tracebacks of such failures are kept off the console.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from purejaxppo.errors import ConfigError
from purejaxppo.outputs.storage import (
    failure_cause,
    first_line,
    quiet_orbax,
    remove_partial_saves,
    silence_failed_save,
)
from purejaxppo.ppo.types import METRIC_DTYPES, Metrics, TrainState

# 4: the metadata is the run's document (`runs.document.run_document`); 3: the GRU carry is
# named `rnn_state` (format 2 called it `hidden`); 2: the optimizer state is one flat vector
# per moment (`optax.flatten`). Older formats are refused.
FORMAT_VERSION = 4
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, or does not match the run."""


class DamagedCheckpoint(CheckpointError):
    """One checkpoint whose files cannot be read (an older one may still be intact)."""


class SaveError(RuntimeError):
    """A checkpoint could not be written (a full disk, a lost device); its message is one
    line with the cause and the newest complete checkpoint."""


# How often a reader retries when the checkpoint it read was deleted by the training run.
READ_ATTEMPTS = 8


@dataclasses.dataclass(frozen=True)
class Restored:
    state: TrainState  # placed with the shardings of the abstract state given
    metrics: Metrics  # numpy [R, updates_done]
    meta: dict[str, Any]
    extra: dict[str, Any] | None = None  # the `extra` tree saved beside them (the strategy's)
    damaged: tuple[tuple[int, str], ...] = ()
    """`(updates, reason)` of each newer checkpoint passed over because it is damaged."""

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
    population-based training carries); `wait` blocks until it is on disk. A failed save
    leaves no temporary directory and raises `SaveError`."""
    meta = {**meta, "format": FORMAT_VERSION}
    tree = {"state": storable_state(state), "metrics": metrics._asdict()}
    if extra is not None:
        tree["extra"] = extra
    step = int(meta["updates_done"])
    directory = Path(manager.directory)
    try:
        with quiet_orbax():
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            if wait:
                manager.wait_until_finished()
    except Exception as error:  # orbax and TensorStore raise many types for one OS error
        silence_failed_save()
        with contextlib.suppress(Exception):
            manager.wait_until_finished()  # its threads may still write into the directory
        remove_partial_saves(directory)
        steps = saved_steps(directory.parent)
        newest = (
            f"the newest complete checkpoint is {directory / str(steps[0])}"
            if steps
            else "no complete checkpoint is on disk"
        )
        raise SaveError(
            f"saving checkpoint {directory / str(step)} failed ({failure_cause(error)}); {newest}"
        ) from None


def saved_steps(out: Path) -> list[int]:
    """The update counts of the complete checkpoints under `out`, newest first: a directory
    listing (orbax renames a checkpoint to its number when the save is complete), no orbax
    manager (whose opening is a collective over processes)."""
    directory = checkpoint_dir(out)
    try:
        names = [p.name for p in directory.iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted((int(name) for name in names if name.isdigit()), reverse=True)


def holds_checkpoint(out: Path) -> bool:
    """Whether `out` holds a saved checkpoint."""
    return bool(saved_steps(out))


def latest_updates(out: Path) -> int | None:
    """The update count of the newest complete checkpoint under `out`, or None."""
    steps = saved_steps(out)
    return steps[0] if steps else None


def read_meta(out: Path) -> dict[str, Any]:
    """The JSON metadata of the newest checkpoint under `out` whose metadata reads."""
    return read_newest_intact(out, lambda step: read_step_meta(out, step))[1]


def read_step_meta(out: Path, step: int) -> dict[str, Any]:
    """The JSON metadata of checkpoint `step`; `DamagedCheckpoint` if it cannot be read."""
    try:
        with quiet_orbax(), reading_manager(out) as manager:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = meta["meta"]
    except Exception as error:  # orbax raises many types for a damaged directory
        raise DamagedCheckpoint(
            f"checkpoint {checkpoint_dir(out) / str(step)} is unreadable: {first_line(error)}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {checkpoint_dir(out) / str(step)} has format "
            f"{meta.get('format') if isinstance(meta, dict) else None!r}; "
            f"this version reads format {FORMAT_VERSION}"
        )
    return meta


def read_newest_intact(out: Path, read: Callable[[int], Any]) -> tuple[int, Any, list]:
    """`(step, read(step), damaged)` for the newest checkpoint `read` succeeds on. One
    deleted while it was read (the training run saved a newer one) sends the search back to
    the newest; one that fails twice (`read` raised `DamagedCheckpoint`) and is still there
    is damaged: passed over for the next older and listed in `damaged` as `(step, reason)`."""
    damaged: list[tuple[int, str]] = []
    failed: set[int] = set()  # read once and failed: a second failure is damage
    vanished = 0
    while vanished < READ_ATTEMPTS:
        steps = [step for step in saved_steps(out) if step not in dict(damaged)]
        if not steps:
            break
        try:
            return steps[0], read(steps[0]), damaged
        except DamagedCheckpoint as error:
            if not (checkpoint_dir(out) / str(steps[0])).is_dir():
                vanished += 1
            elif steps[0] in failed:  # twice, and still there: not a deletion in progress
                damaged.append((steps[0], str(error)))
            else:
                failed.add(steps[0])
    raise no_intact_checkpoint(out, damaged)


def no_intact_checkpoint(out: Path, damaged: list[tuple[int, str]]) -> CheckpointError:
    if not damaged:
        return CheckpointError(f"no checkpoint under {checkpoint_dir(out)}")
    return CheckpointError(
        f"no intact checkpoint under {checkpoint_dir(out)}: {damaged[0][1]}"
        + (f" (and {len(damaged) - 1} older one(s) damaged too)" if len(damaged) > 1 else "")
    )


def restore_checkpoint(
    out: Path,
    abstract_state: TrainState,
    num_runs: int,
    abstract_extra: Callable[[int], Any] | None = None,
) -> Restored:
    """Read the newest intact checkpoint under `out` into arrays shaped like `abstract_state`
    (a `jax.eval_shape` of the run's init, run axis as the caller places it), and its
    `extra` tree shaped like `abstract_extra(updates_done)` when given."""

    def read(step: int) -> Restored:
        return restore_step(out, step, abstract_state, num_runs, abstract_extra)

    _, restored, damaged = read_newest_intact(out, read)
    return dataclasses.replace(restored, damaged=tuple(damaged))


def restore_step(
    out: Path,
    step: int,
    abstract_state: TrainState,
    num_runs: int,
    abstract_extra: Callable[[int], Any] | None,
) -> Restored:
    """Checkpoint `step` (see `restore_checkpoint`); `DamagedCheckpoint` if unreadable."""
    meta = read_step_meta(out, step)
    metric_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = {
        "state": jax.tree.map(_abstract_leaf, storable_abstract(abstract_state)),
        "metrics": {
            name: jax.ShapeDtypeStruct(
                (num_runs, step), METRIC_DTYPES[name], sharding=metric_device
            )
            for name in Metrics._fields
        },
    }
    extra = None if abstract_extra is None else abstract_extra(step)
    if extra is not None:
        abstract["extra"] = jax.tree.map(_abstract_leaf, extra)
    with quiet_orbax(), reading_manager(out) as manager:
        check_shapes(manager, step, abstract, out)
        try:
            tree = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )["state"]
        except Exception as error:
            raise DamagedCheckpoint(
                f"checkpoint {checkpoint_dir(out) / str(step)} is unreadable: {first_line(error)}"
            ) from None
    metrics = Metrics(**{k: np.asarray(v) for k, v in tree["metrics"].items()})
    extra_tree = jax.tree.map(np.asarray, tree["extra"]) if "extra" in tree else None
    return Restored(typed_state(tree["state"]), metrics, meta, extra_tree)


def set_aside_damaged(out: Path, damaged: tuple[tuple[int, str], ...]) -> list[Path]:
    """Rename each damaged checkpoint to `damaged-<updates>` (kept for a look, and no longer
    a step that the next save would collide with); the new names."""
    moved = []
    for step, _ in damaged:
        source = checkpoint_dir(out) / str(step)
        target = checkpoint_dir(out) / f"damaged-{step}"
        suffix = 1
        while target.exists():
            target, suffix = checkpoint_dir(out) / f"damaged-{step}-{suffix}", suffix + 1
        if source.is_dir():
            source.rename(target)
            moved.append(target)
    return moved


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
        raise DamagedCheckpoint(
            f"checkpoint {checkpoint_dir(out) / str(step)} is unreadable: {first_line(error)}"
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
