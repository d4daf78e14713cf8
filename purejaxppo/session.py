"""A training session: `TrainSession.open(spec, loop, out)` builds and checks everything
(the fit before anything grows with the population, the restored checkpoint when resuming),
then `session.run(hooks, stop_requested)` compiles the chunks and runs them, calling the
hooks (`purejaxppo.outputs.hooks`) between chunks.

    session = TrainSession.open(RunSpec("cartpole", config, hp, num_seeds=16), LoopOptions())
    run = session.run()                      # no hooks: just train
    final_returns(run.metrics)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.outputs import checkpoint
from purejaxppo.outputs.checkpoint import CheckpointError, Restored, SaveError, restore_checkpoint
from purejaxppo.outputs.hooks import ChunkReport
from purejaxppo.outputs.summary import evaluations_from_json
from purejaxppo.ppo.trainer import Trainer, make_train
from purejaxppo.ppo.tuning import Tuning
from purejaxppo.ppo.types import Policy, policy_of
from purejaxppo.runs.changes import values_in_force
from purejaxppo.runs.chunked import (
    ChunkedRun,
    ResumePoint,
    abstract_train_state,
    carried_on_host,
    compile_chunked,
    default_chunk_updates,
    run_chunked,
    unpadded_state,
)
from purejaxppo.runs.document import read_run_document, run_document
from purejaxppo.runs.memory_budget import check_population_fits
from purejaxppo.runs.placement import Placement, make_placement, place_runs
from purejaxppo.runs.population import Population, population_of
from purejaxppo.runs.processes import every_process_agrees
from purejaxppo.runs.spec import LoopOptions, RunSpec
from purejaxppo.runs.strategies import strategy_for
from purejaxppo.runs.strategy import Carried, PopulationStrategy

WRITE_FAILED = 1000
"""The stop code of a run stopped because a hook could not write (beyond every signal's
number): every process stops, and none saves a final checkpoint."""


@dataclasses.dataclass
class TrainSession:
    """A run ready to train (or to evaluate, when restored): see `open`."""

    spec: RunSpec
    loop: LoopOptions
    """The loop options, `chunk_updates` resolved."""
    out: Path | None
    trainer: Trainer
    population: Population
    placement: Placement
    restored: Restored | None = None
    """The checkpoint a resumed session continues."""
    evaluations: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    """`{update: [R] mean deterministic return}` so far (restored ones included)."""

    @classmethod
    def open(
        cls,
        spec: RunSpec,
        loop: LoopOptions | None = None,
        out: Path | None = None,
        *,
        resume: bool = False,
        tuning: Tuning | None = None,
        check_fits: bool = True,
    ) -> TrainSession:
        """Build the trainer and the population and check they fit, before anything grows
        with the population; with `resume`, restore the newest checkpoint under `out`.
        `check_fits=False` skips the memory check where it was made before (the `train`
        command makes it before it locks its directory) or does not apply (`eval`, `export`
        and `render` read a finished run and check what they do themselves)."""
        loop = LoopOptions() if loop is None else loop
        placement = make_placement(loop.devices)
        trainer = make_train(spec.config, tuning=tuning)  # an unknown env fails here
        if check_fits:
            episodes = loop.eval_episodes if loop.eval_every else 0
            check_population_fits(spec.config, trainer.env, spec.num_runs, placement, episodes)
        loop = resolve_chunk_updates(loop, spec)
        if out is not None and not resume and checkpoint.holds_checkpoint(out):
            raise ConfigError(
                f"{out} already holds a checkpointed run: resume it, or write elsewhere"
            )
        session = cls(spec, loop, out, trainer, population_of(spec), placement)
        if resume:
            session.restore()
        return session

    def restore(self) -> None:
        """Read the newest intact checkpoint under `out`; it must be of this session's runs.
        A damaged newer one is passed over, and said so in one line."""
        if self.out is None:
            raise ConfigError("resuming needs the directory of the run (out)")
        abstract, num_runs = abstract_train_state(self.trainer, self.population), self.num_runs

        def extra(updates_done: int) -> Any:
            return self.strategy.abstract_checkpoint(num_runs, updates_done, self.num_updates)

        restored = restore_checkpoint(self.out, abstract, num_runs, extra)
        saved, _ = read_run_document(restored.meta, f"checkpoint metadata in {self.out}")
        if saved != self.spec:
            raise CheckpointError(f"checkpoint in {self.out} is of other runs than this session's")
        intact = checkpoint.checkpoint_dir(self.out) / str(restored.updates_done)
        for _, reason in restored.damaged:
            say(f"{reason.rstrip('.')}; using the newest intact one instead, {intact}")
        self.restored = restored
        self.evaluations = evaluations_from_json(restored.meta.get("evaluations", {}))

    @property
    def num_updates(self) -> int:
        return self.spec.config.num_updates

    @property
    def num_runs(self) -> int:
        return self.population.num_runs

    @functools.cached_property
    def strategy(self) -> PopulationStrategy:
        """The population strategy the chunks run (`RunSpec.strategy`'s)."""
        return strategy_for(self.spec.strategy, self.spec.search, self.spec.seed)

    def checkpoint_extra(self, run: ChunkedRun) -> dict[str, Any] | None:
        """What a checkpoint of `run` holds beside the state and metrics: the strategy's
        values (every process must call it)."""
        return self.strategy.to_checkpoint(carried_on_host(self.placement, run, self.num_runs))

    def restored_carried(self) -> Carried | None:
        """The strategy's values in the restored checkpoint (None: fresh, or none kept)."""
        if self.restored is None:
            return None
        return self.strategy.from_checkpoint(self.restored.extra)

    @property
    def updates_done(self) -> int:
        """Updates done before this session (restored)."""
        return 0 if self.restored is None else self.restored.updates_done

    @property
    def finished(self) -> bool:
        return self.updates_done >= self.num_updates

    def document(self, **extra: Any) -> dict[str, Any]:
        """The run's JSON document (`config.json`, checkpoint metadata) with `extra`."""
        return run_document(self.spec, self.loop, self.trainer.tuning, **extra)

    def run(
        self, hooks: Sequence[Any] = (), stop_requested: Callable[[], int] = lambda: 0
    ) -> ChunkedRun:
        """Compile the chunks and run them to the end, or to the first chunk boundary where
        `stop_requested()` is nonzero (on any process). Every hook's `check` runs first, on
        every process, and nothing is written until all have passed everywhere; then
        `on_start`, `on_chunk` and `close`, each in the hooks' order. A hook that cannot
        write (`OSError`, `SaveError`) stops every process at the next chunk boundary
        (`WRITE_FAILED`), the hooks close without a final save, and the error is raised on
        the process that met it."""
        check_hooks(self, hooks)
        run, failures = None, []
        try:
            for hook in hooks:
                hook.on_start(self)
            program = compile_chunked(
                self.trainer, self.population, self.loop.chunk_updates, self.updates_done,
                self.placement, self.strategy,
            )  # fmt: skip

            def on_chunk(chunked: ChunkedRun, done: Any) -> None:
                chunks_done = -(-done.updates_done // self.loop.chunk_updates)
                report = ChunkReport(chunked, done, chunks_done, {})
                try:
                    for hook in hooks:
                        hook.on_chunk(self, report)
                except (OSError, SaveError) as error:
                    failures.append(error)  # raised once every process has stopped

            def stop_or_failed() -> int:
                return WRITE_FAILED if failures else int(stop_requested())

            run = run_chunked(
                program, self.population, resume=self.resume_state(), on_chunk=on_chunk,
                stop_requested=stop_or_failed,
                hyperparams_at=self.changed_hyperparams if self.spec.changes else None,
            )  # fmt: skip
        finally:
            failed = failures or (run is not None and run.stop_code == WRITE_FAILED)
            close_hooks(self, hooks, None if failed else run)
        if failures:
            raise failures[0]
        return run

    def changed_hyperparams(self, updates_done: int) -> Any:
        """Every run's hyperparameters from `updates_done` on, as the spec's changes say
        (host `[R]`)."""
        values = values_in_force(self.spec.changes, updates_done)
        full = {name: np.full(self.num_runs, value, np.float32) for name, value in values.items()}
        return self.population.hyperparams.replace(**full)

    def resume_state(self) -> ResumePoint | None:
        """Where to continue from, the state placed; None for a fresh run."""
        if self.restored is None:
            return None
        restored = self.restored
        state = place_runs(self.placement, restored.state, self.num_runs)
        return ResumePoint(state, restored.metrics, restored.updates_done, self.restored_carried())

    def policies(self, state: Any) -> Policy:
        """Every run's policy `[R, ...]` of a trained or restored `state`, padding dropped."""
        state = unpadded_state(self.placement, state, self.population.num_runs)
        return policy_of(self.spec.config, state)


def check_hooks(session: TrainSession, hooks: Sequence[Any]) -> None:
    """Every hook's `check`, in order (a hook may have none), then every process agrees:
    if one refuses, the hooks checked before it are closed (a tracker started by its check
    is finished) and every process raises (the one that refused, its own error)."""
    refusal = None
    for index, hook in enumerate(hooks):
        check = getattr(hook, "check", None)
        try:
            if check is not None:
                check(session)
        except Exception as error:
            close_hooks(session, hooks[:index], None)
            refusal = error
            break
    if not every_process_agrees(refusal is None):
        if refusal is None:  # another process refused: close what this one's checks opened
            close_hooks(session, hooks, None)
        raise refusal or ConfigError(
            "another process of this run refused it (its console says why)"
        )


def close_hooks(session: TrainSession, hooks: Sequence[Any], run: ChunkedRun | None) -> None:
    """Every hook's `close`, in order, even when one of them fails. After a failure the
    rest close as after a failed run (`run` None: no summary of a run whose checkpoint was
    not saved); the first failure is raised after all have closed."""
    failure = None
    for hook in hooks:
        try:
            hook.close(session, None if failure is not None else run)
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure


def say(text: str) -> None:
    """A one-line notice on stderr (process 0 only)."""
    import jax

    if jax.process_index() == 0:
        print(f"purejaxppo: {text}", file=sys.stderr, flush=True)


def resolve_chunk_updates(loop: LoopOptions, spec: RunSpec) -> LoopOptions:
    """`loop` with `chunk_updates` set and checked. The default is about 1/20 of the run;
    a multiple of what the strategy needs (`chunk_rule`); with hyperparameter changes a
    divisor of their updates (the values change between chunks)."""
    num_updates = spec.config.num_updates
    multiple, why = spec.strategy.chunk_rule()
    every = multiple if multiple > 1 else 0
    changes = [update for update, _ in spec.changes]
    chunk_updates = loop.chunk_updates
    if chunk_updates is None:
        chunk_updates = default_chunk_updates(num_updates)
        if every:
            chunk_updates = max(1, round(chunk_updates / every)) * every
            chunk_updates = min(chunk_updates, num_updates // every * every)
        if changes:  # the largest divisor of every change's update that is not larger
            common = math.gcd(*changes)
            chunk_updates = max(d for d in range(1, chunk_updates + 1) if common % d == 0)
    if chunk_updates > num_updates:
        raise ConfigError(
            f"chunk_updates = {chunk_updates} is more than the run's {num_updates} updates"
        )
    if every and chunk_updates % every:
        raise ConfigError(f"chunk_updates = {chunk_updates} must be a multiple of {why}")
    if any(update % chunk_updates for update in changes):
        raise ConfigError(
            f"chunk_updates = {chunk_updates} must divide the updates of the hyperparameter "
            f"changes {changes} (the values change between chunks)"
        )
    return loop.replace(chunk_updates=chunk_updates)


def load_saved_run(out: Path) -> tuple[RunSpec, LoopOptions]:
    """The spec and loop options saved with the newest checkpoint under `out`."""
    return read_run_document(
        checkpoint.read_meta(out), f"checkpoint metadata in {out} is incomplete or invalid"
    )
