"""The independent strategy at run time: each chunk is `run_updates` of every run, mapped over
the run axis; nothing is carried between chunks beyond the runs' own state, nothing logged,
nothing checkpointed beside the state and metrics."""

from __future__ import annotations

from typing import Any

from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import TrainState
from purejaxppo.runs.compile import compile_program, trainer_program
from purejaxppo.runs.placement import Placement
from purejaxppo.runs.strategy import Carried, ChunkCall


class IndependentRuns:
    """`PopulationStrategy` of runs that never meet."""

    def compile_chunk(
        self, trainer: Trainer, placement: Placement, num_runs: int, size: int, example_args: tuple
    ) -> tuple[ChunkCall, float]:
        def run_chunk(state: TrainState, hp: Any) -> tuple:
            return trainer.run_updates(hp, state, size)

        compiled = compile_program(
            trainer_program(trainer, run_chunk, placement),
            example_args,
            donate_argnums=(0,),
            compiler_options=trainer.tuning.compiler_options_dict(),
        )

        def chunk(state: TrainState, hps: Any, carry: Any) -> tuple:
            state, metrics = compiled.program(state, hps)
            return state, hps, carry, metrics, None

        return chunk, compiled.compile_s

    def initial_carry(self, num_runs: int) -> None:
        return None

    def log_to_host(self, placement: Placement, log: Any, num_runs: int) -> None:
        return None

    def to_checkpoint(self, carried: Carried) -> None:
        return None

    def abstract_checkpoint(self, num_runs: int, updates_done: int, num_updates: int) -> None:
        return None

    def from_checkpoint(self, tree: Any) -> None:
        return None
