"""The population strategies a run's description may name, each a `StrategySettings` (read
from the run document under its `document_key`) and the builder of its `PopulationStrategy`.
A new strategy is its own settings and runtime modules plus one entry here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from purejaxppo.runs.pbt_settings import PBTConfig
from purejaxppo.runs.search import SearchRange
from purejaxppo.runs.strategy import Independent, PopulationStrategy

# The builders import their runtime modules when called: reading a run's description
# imports no jax.


def _independent_runs(
    settings: Any, search: Mapping[str, SearchRange], seed: int
) -> PopulationStrategy:
    from purejaxppo.runs.independent import IndependentRuns

    return IndependentRuns()


def _population_based(
    settings: Any, search: Mapping[str, SearchRange], seed: int
) -> PopulationStrategy:
    from purejaxppo.runs.pbt import pbt_strategy

    return pbt_strategy(settings, search, seed)


BUILDERS: dict[type, Callable[[Any, Mapping[str, SearchRange], int], PopulationStrategy]] = {
    Independent: _independent_runs,
    PBTConfig: _population_based,
}

DOCUMENTED = tuple(kind for kind in BUILDERS if kind.document_key is not None)
"""The settings types a run document may hold, each under its `document_key`."""


def strategy_for(settings: Any, search: Mapping[str, SearchRange], seed: int) -> PopulationStrategy:
    """The strategy of a run's description (`RunSpec.strategy`, its search and seed)."""
    return BUILDERS[type(settings)](settings, search, seed)
