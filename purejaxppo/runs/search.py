"""Searched hyperparameters: each run draws its own value of a traced hyperparameter from a
range (`SearchRange`), deterministically from the population's first seed.

Draws are made with numpy on the host, per seed index and per name (`draw_search`), so the
runs of every swept setting share the same searched values (the grid compares settings on
common values, as it compares them on common seeds) and adding a searched name does not
change the values drawn for the others.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from purejaxppo.config import HYPERPARAM_NAMES, HYPERPARAM_RANGES, Hyperparams, validate_hyperparams
from purejaxppo.errors import ConfigError

SEARCH_KINDS = ("log", "uniform")
SEARCH_RANGE_FIELDS = ("kind", "low", "high")
"""The keys of one range in a run document's `search` object (`SearchRange.to_dict`)."""


@dataclasses.dataclass(frozen=True)
class SearchRange:
    """A range a hyperparameter is drawn from: `uniform` on [low, high], or `log`-uniform
    (uniform in log space, for scales such as the learning rate)."""

    kind: str
    """`log` or `uniform`."""

    low: float
    """Smallest value drawn (and the floor a strategy's changes are clipped to)."""

    high: float
    """Largest value drawn (and the ceiling of a strategy's changes)."""

    def to_text(self) -> str:
        """`kind:low:high`, the form `--search NAME=...` takes."""
        return f"{self.kind}:{self.low:g}:{self.high:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high}


def parse_search_range(name: str, text: str) -> SearchRange:
    """`log:LOW:HIGH` or `uniform:LOW:HIGH` as a `SearchRange` (checked by `check_search`)."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in SEARCH_KINDS:
        raise ConfigError(
            f"search {name}={text!r}: expected log:LOW:HIGH or uniform:LOW:HIGH, e.g. "
            f"{name}=log:1e-5:3e-2"
        )
    try:
        low, high = float(parts[1]), float(parts[2])
    except ValueError:
        raise ConfigError(f"search {name}={text!r}: LOW and HIGH must be numbers") from None
    return SearchRange(parts[0], low, high)


def check_search(name: str, search_range: SearchRange, hp: Hyperparams) -> None:
    """A searched hyperparameter: traced, a known kind, finite `low < high`, both ends valid
    with the rest of `hp`, and positive for a log range."""
    if name not in HYPERPARAM_NAMES:
        raise ConfigError(
            f"cannot search {name!r}: it is static (changes shapes or control flow); "
            f"searchable: {', '.join(HYPERPARAM_NAMES)}"
        )
    text = f"search {name}={search_range.to_text()}"
    if search_range.kind not in SEARCH_KINDS:
        raise ConfigError(f"{text}: the kind must be one of {', '.join(SEARCH_KINDS)}")
    low, high = search_range.low, search_range.high
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"{text}: needs finite LOW < HIGH")
    if search_range.kind == "log" and low <= 0:
        raise ConfigError(f"{text}: a log range needs LOW > 0")
    for value in (low, high):
        try:
            validate_hyperparams(hp.replace(**{name: value}))
        except ConfigError as error:
            raise ConfigError(f"{text}: {error}") from None


def search_from_json(values: Any) -> dict[str, SearchRange]:
    """`{name: {"kind", "low", "high"}}` (as `run_document` writes it) as search ranges."""
    if not isinstance(values, dict):
        raise ConfigError("search must map names to {kind, low, high}")
    ranges = {}
    for name, value in values.items():
        if not isinstance(value, dict) or set(value) != set(SEARCH_RANGE_FIELDS):
            raise ConfigError(f"search {name} must be an object of kind, low and high")
        if not all(isinstance(value[k], int | float) for k in ("low", "high")):
            raise ConfigError(f"search {name}: low and high must be numbers")
        ranges[name] = SearchRange(str(value["kind"]), float(value["low"]), float(value["high"]))
    return ranges


def draw_search(
    search: Mapping[str, SearchRange], seed: int, num_seeds: int
) -> dict[str, np.ndarray]:
    """Each searched name's values for seed indices 0..num_seeds-1, float32 `[num_seeds]`.

    Name `n`'s draws come from numpy's generator seeded by (`seed`, crc32(`n`)): the same
    seed gives the same values, on any machine."""
    values = {}
    for name, search_range in search.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        unit = rng.random(num_seeds)
        low, high = search_range.low, search_range.high
        if search_range.kind == "log":
            drawn = np.exp(np.log(low) + unit * (np.log(high) - np.log(low)))
        else:
            drawn = low + unit * (high - low)
        # float32 as the runs hold it, kept inside the range after rounding
        values[name] = np.clip(drawn.astype(np.float32), np.float32(low), np.float32(high))
    return values


def search_bounds(search: Mapping[str, SearchRange]) -> dict[str, tuple[float, float]]:
    """Each searched name's (low, high): where a strategy's changes are clipped to; within the
    hyperparameter's valid range, since both ends were checked against it."""
    bounds = {}
    for name, search_range in search.items():
        valid_low, valid_high, _, _ = HYPERPARAM_RANGES[name]
        bounds[name] = (max(search_range.low, valid_low), min(search_range.high, valid_high))
    return bounds
