"""Hyperparameter changes on the host: `(from_update, {name: value})` entries that set traced
hyperparameters of every run between chunks (an evolved run's lineage, replayed, is one).
Not to be confused with the in-program schedules of `purejaxppo.ppo.schedules`, which anneal
the learning rate and the entropy weight inside the compiled update."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from purejaxppo.config import HYPERPARAM_NAMES, Hyperparams, is_int, is_number, validate_hyperparams
from purejaxppo.errors import ConfigError

Changes = tuple[tuple[int, Mapping[str, float]], ...]


def check_changes(
    changes: Iterable[Any], num_updates: int, hyperparams: Hyperparams, fixed: Sequence[str]
) -> Changes:
    """Changes at increasing update counts inside a run of `num_updates` updates, each with
    valid values of traced hyperparameters not in `fixed` (the swept and searched ones)."""
    checked, last = [], 0
    for entry in changes:
        if not (isinstance(entry, list | tuple) and len(entry) == 2):
            raise ConfigError(f"changes are (from_update, {{name: value}}), got {entry!r}")
        update, values = entry
        if not is_int(update) or not last < update < num_updates:
            raise ConfigError(
                f"change at update {update!r}: the update must be an integer after {last} and "
                f"before the run's {num_updates} updates"
            )
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"change at update {update}: give {{name: value}}")
        for name, value in values.items():
            if name not in HYPERPARAM_NAMES or name in fixed:
                raise ConfigError(
                    f"change at update {update}: {name!r} is not a traced hyperparameter "
                    "left to change (swept and searched ones are not)"
                )
            if not is_number(value):
                raise ConfigError(f"change at update {update}: {name} must be a number")
            validate_hyperparams(hyperparams.replace(**{name: value}))
        checked.append((update, {name: float(v) for name, v in values.items()}))
        last = update
    return tuple(checked)


def values_in_force(changes: Changes, updates_done: int) -> dict[str, float]:
    """The changed values in force from `updates_done` on (empty before the first change)."""
    values: dict[str, float] = {}
    for update, changed in changes:
        if update <= updates_done:
            values |= changed
    return values
