"""The replay of a PBT run's best lineage as one fresh run with fixed hyperparameter changes
(`purejaxppo.runs.changes`): does the lineage's sequence of values, or the parameters it
inherited, make the best run?"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from purejaxppo.errors import ConfigError
from purejaxppo.runs.spec import RunSpec
from purejaxppo.runs.strategy import Independent


def replay_spec(spec: RunSpec, best: Mapping[str, Any]) -> RunSpec:
    """One fresh run that replays the best run of PBT run `spec`: its lineage's searched
    values from the start, changed at each PBT step as the lineage's were (`best` is
    `summary.json`'s `best`), with the best run's seed; no search, no PBT. The replay trains
    its own parameters throughout, so its return tells whether the values or the inherited
    parameters made the best run."""
    lineage = best.get("changes", best.get("schedule"))  # "schedule": earlier versions
    if not lineage:
        raise ConfigError("the run has no PBT lineage to replay (its best run has none)")
    names = list(spec.search)
    first, *later = lineage
    changes = tuple((entry["from_update"], {n: entry[n] for n in names}) for entry in later)
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-replay",
        hyperparams=spec.hyperparams.replace(**{n: first[n] for n in names}),
        seed=best["seed"],
        num_seeds=1,
        search={},
        strategy=Independent(),
        changes=changes,
    )
