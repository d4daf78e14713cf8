"""The population-strategy seam: how the runs of a population relate between updates.

Independent runs never meet; population-based training ranks them and copies the best
every so many updates; an evolution strategy over hyperparameters would be a third. Each is
a pair behind the two protocols below:

- its `StrategySettings`, part of a run's description (`RunSpec.strategy`): plain data,
  checked when the description is made, written to and read from the run's document;
- its `PopulationStrategy`, built from the settings: the compiled chunk program, the carry
  it threads from chunk to chunk (opaque to everything else), the log of what it did, and
  the form all of that takes in a checkpoint.

The chunk loop (`purejaxppo.runs.chunked`), the session and the checkpoint hold a strategy
and its carry without knowing which it is. `purejaxppo.runs.strategies` lists the strategies
a run document may name.

This module and the settings import no jax: a description is read and checked before jax
is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Protocol


class PopulationShape(NamedTuple):
    """What a strategy's settings are checked against: the population's shape."""

    num_runs: int
    num_updates: int
    swept: tuple[str, ...]  # the swept hyperparameters' names
    searched: tuple[str, ...]  # the searched hyperparameters' names


class StrategySettings(Protocol):
    """A strategy's part of a run's description (a frozen dataclass)."""

    document_key: ClassVar[str | None]
    """The key of its object in a run document (None: nothing written)."""

    @property
    def independent(self) -> bool:
        """True when these settings leave every run to itself (a run's description then
        holds `Independent()` instead)."""

    def check(self, population: PopulationShape) -> None:
        """Refuse (ConfigError, naming the field) settings this population cannot run."""

    def chunk_rule(self) -> tuple[int, str]:
        """`(multiple, why)`: every compiled chunk is a multiple of this many updates."""

    def to_dict(self) -> dict[str, Any]:
        """Its object in the run document."""

    @classmethod
    def from_json(cls, values: Any) -> StrategySettings:
        """The settings of its object in a run document (unknown keys refused)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The keys of its object in a run document."""


ChunkCall = Callable[[Any, Any, Any], tuple[Any, Any, Any, Any, Any]]
"""A compiled chunk: `(state, hyperparams, carry) -> (state, hyperparams, carry, metrics,
log)`, every leaf placed with the (padded) run axis first; `log` is None or a pytree whose
leaves have the chunk's steps first."""


class Carried(NamedTuple):
    """What a strategy keeps of a run on the host (every leaf numpy)."""

    hyperparams: Any  # Hyperparams `[R]`: every run's current values (None: the population's)
    carry: Any  # the strategy's carry `[R, ...]` (None: it carries nothing)
    log: Any  # its log so far, steps first (None: nothing logged)


class PopulationStrategy(Protocol):
    """A strategy at run time (built by `purejaxppo.runs.strategies.strategy_for`)."""

    def compile_chunk(
        self, trainer: Any, placement: Any, num_runs: int, size: int, example_args: tuple
    ) -> tuple[ChunkCall, float]:
        """The chunk of `size` updates compiled for `example_args` `(state, hyperparams)`
        (placed, padded), and the seconds that took."""

    def initial_carry(self, num_runs: int) -> Any:
        """The carry before the first chunk, on the host `[R, ...]` (None: nothing)."""

    def log_to_host(self, placement: Any, log: Any, num_runs: int) -> Any:
        """A chunk's log on the host (every process), padding runs dropped (None: none)."""

    def to_checkpoint(self, carried: Carried) -> dict[str, Any] | None:
        """What a checkpoint stores beside the state and metrics (None: nothing)."""

    def abstract_checkpoint(
        self, num_runs: int, updates_done: int, num_updates: int
    ) -> dict[str, Any] | None:
        """The shapes and dtypes `to_checkpoint` gives after `updates_done` updates."""

    def from_checkpoint(self, tree: dict[str, Any] | None) -> Carried | None:
        """The inverse of `to_checkpoint` (None: the checkpoint holds nothing of it)."""


@dataclasses.dataclass(frozen=True)
class Independent:
    """Every run trains alone: the default strategy, with no settings."""

    document_key: ClassVar[str | None] = None

    @property
    def independent(self) -> bool:
        return True

    def check(self, population: PopulationShape) -> None:
        return None

    def chunk_rule(self) -> tuple[int, str]:
        return 1, ""

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, values: Any) -> Independent:
        return cls()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return ()
