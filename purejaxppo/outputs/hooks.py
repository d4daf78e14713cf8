"""What a training session does between chunks: small hook objects, called in order.

A hook has `check(session)`, `on_start(session)` (both before compiling), `on_chunk(session,
report)` after each chunk and `close(session, run)` at the end (`run` is None when the run
failed or a check refused it). Every hook's `check` (optional) runs before any hook's
`on_start`, and writes nothing: so a refused run (no tracker login, no room for a
checkpoint) leaves every file of the run directory as it was. The session
(`purejaxppo.session.TrainSession`) gives them its spec, options, trainer, population,
placement, restored checkpoint, evaluations and run document. `default_hooks` decides once
which process writes what: every process evaluates and saves checkpoints (both are
collective over a mesh); process 0 alone writes files and draws progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from purejaxppo.metrics import final_returns, mean_finished_returns
from purejaxppo.outputs import console, plots
from purejaxppo.outputs.checkpoint import (
    checkpoint_dir,
    open_manager,
    save_checkpoint,
    set_aside_damaged,
)
from purejaxppo.outputs.console import TrainProgress
from purejaxppo.outputs.files import remove_temporaries
from purejaxppo.outputs.logs import (
    CSV_ROW_BYTES,
    MetricsCsv,
    TensorBoardLog,
    WandbLog,
    check_sink_extras,
)
from purejaxppo.outputs.populations import PBTCsv
from purejaxppo.outputs.render import check_drawable, draw_record, record_episodes, render_title
from purejaxppo.outputs.storage import check_disk_room, remove_partial_saves
from purejaxppo.outputs.summary import build_summary, evaluations_to_json, write_json
from purejaxppo.runs.chunked import ChunkDone, ChunkedRun, abstract_train_state, unpadded_state
from purejaxppo.runs.evaluation import evaluate_runs
from purejaxppo.runs.memory_budget import metrics_bytes
from purejaxppo.runs.pbt import PBTLog
from purejaxppo.runs.pbt_settings import PBTConfig


@dataclasses.dataclass(frozen=True)
class ChunkReport:
    """One finished chunk, as the hooks see it."""

    run: ChunkedRun
    done: ChunkDone
    chunks_done: int
    """Chunks finished since the run's start (a resumed run keeps counting)."""
    evaluated: dict[int, np.ndarray]
    """`{update: [R] mean deterministic return}` of this chunk (filled by `EvalHook`)."""
    movies: dict[str, Path] = dataclasses.field(default_factory=dict)
    """`{tag: file}` of the animations drawn after this chunk (filled by `RenderHook`)."""

    @property
    def first_update(self) -> int:
        """Updates done before this chunk."""
        return self.done.updates_done - int(
            np.asarray(self.done.chunk_metrics.total_loss).shape[-1]
        )


class Hook(Protocol):
    def check(self, session: Any) -> None: ...
    def on_start(self, session: Any) -> None: ...
    def on_chunk(self, session: Any, report: ChunkReport) -> None: ...
    def close(self, session: Any, run: ChunkedRun | None) -> None: ...


class EvalHook:
    """Every `every` chunks, `episodes` deterministic episodes per run, into the report and
    the session's evaluations (so checkpoints and the CSV keep them)."""

    def __init__(self, every: int, episodes: int):
        self.every, self.episodes = every, episodes

    def check(self, session: Any) -> None:
        """Nothing to check."""

    def on_start(self, session: Any) -> None:
        """Nothing before the run."""

    def on_chunk(self, session: Any, report: ChunkReport) -> None:
        if report.chunks_done % self.every:
            return
        policy = session.policies(report.run.state)
        key = jax.random.key(session.spec.seed)
        result = evaluate_runs(
            session.trainer, policy, key, self.episodes, True, placement=session.placement
        )
        returns = mean_finished_returns(result.returns, result.finished)
        report.evaluated[report.done.updates_done] = returns
        session.evaluations[report.done.updates_done] = returns

    def close(self, session: Any, run: ChunkedRun | None) -> None:
        """Nothing after the run."""


class RenderHook:
    """Every `every` chunks and after the last one, one deterministic episode of run 0 as
    `out/renders/update-<updates>.gif`, into the report's movies (which the metric sinks
    log). Every process gathers run 0's policy (a collective over a mesh); `writes` draws."""

    def __init__(self, out: Path, every: int, writes: bool):
        self.out, self.every, self.writes = out, every, writes

    def check(self, session: Any) -> None:
        check_drawable(session.trainer.env)  # before anything compiles

    def on_start(self, session: Any) -> None:
        """Nothing before the run."""

    def on_chunk(self, session: Any, report: ChunkReport) -> None:
        updates = report.done.updates_done
        if report.chunks_done % self.every and updates < session.num_updates:
            return
        run_0 = jax.tree.map(lambda leaf: leaf[:1], session.policies(report.run.state))
        policy = jax.tree.map(lambda leaf: leaf[0], session.placement.to_host(run_0))
        if not self.writes:
            return
        path = self.out / "renders" / f"update-{updates:07d}.gif"
        key = jax.random.fold_in(jax.random.key(session.spec.seed), updates)
        label = render_title(session, 0, updates)
        draw_record(
            session.trainer, record_episodes(session.trainer, policy, key, 1, True), path, label
        )
        report.movies["render/run-0"] = path

    def close(self, session: Any, run: ChunkedRun | None) -> None:
        """Nothing after the run."""


class ProgressHook:
    """A progress bar of updates, env steps, SPS and the recent return."""

    bar: TrainProgress | None = None

    def check(self, session: Any) -> None:
        """Nothing to check."""

    def on_start(self, session: Any) -> None:
        steps_per_update = session.spec.config.batch_size * session.population.num_runs
        self.bar = TrainProgress(session.num_updates, session.updates_done, steps_per_update, True)
        self.bar.__enter__()

    def on_chunk(self, session: Any, report: ChunkReport) -> None:
        self.bar.update(report.done)

    def close(self, session: Any, run: ChunkedRun | None) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


class CheckpointHook:
    """A checkpoint every `every` chunks (0: none on the way) and always at the end, under
    `out/checkpoints/<updates>`: the state, the metrics and the run's document. Before the
    run it checks the disk has room for the final checkpoint, so a run that saves only at
    the end can count on that save; a save that fails anyway stops the run (`SaveError`)."""

    def __init__(self, out: Path, every: int):
        self.out, self.every = out, every
        self.manager: Any = None

    def check(self, session: Any) -> None:
        state = abstract_train_state(session.trainer, session.population)
        state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
        config, num_runs = session.spec.config, session.population.num_runs
        final = state_bytes + metrics_bytes(config, num_runs)
        metrics_file = num_runs * config.num_updates * CSV_ROW_BYTES
        check_disk_room(self.out, final, 2 * metrics_file)  # the CSV is rewritten whole

    def on_start(self, session: Any) -> None:
        if jax.process_index() == 0:  # one process renames, before the collective open
            restored = session.restored
            if restored is not None and restored.damaged:
                for kept in set_aside_damaged(self.out, restored.damaged):
                    print(f"purejaxppo: the damaged checkpoint is kept as {kept}", file=sys.stderr)
            remove_partial_saves(checkpoint_dir(self.out))
        self.manager = open_manager(self.out)

    def on_chunk(self, session: Any, report: ChunkReport) -> None:
        periodic = self.every and report.chunks_done % self.every == 0
        if periodic and report.done.updates_done < session.num_updates:
            self.save(session, report.run)

    def close(self, session: Any, run: ChunkedRun | None) -> None:
        if self.manager is None:
            return
        try:
            if run is not None:
                self.save(session, run)
        finally:
            with contextlib.suppress(Exception):  # a manager whose save failed may fail again
                self.manager.close()
            self.manager = None
            if jax.process_index() == 0:  # what a failed save's threads wrote after it failed
                remove_partial_saves(checkpoint_dir(self.out))

    def save(self, session: Any, run: ChunkedRun) -> None:
        if run.updates_done == 0 or self.manager.latest_step() == run.updates_done:
            return  # nothing trained yet, or saved at this update already
        state = unpadded_state(session.placement, run.state, session.population.num_runs)
        evaluations = evaluations_to_json(session.evaluations)
        meta = session.document(updates_done=run.updates_done, evaluations=evaluations)
        save_checkpoint(self.manager, state, run.metrics, meta, session.checkpoint_extra(run))


class RunFilesHook:
    """`config.json` at the start; `summary.json` and `learning_curve.png` at the end, and
    the summary on the console."""

    def __init__(self, out: Path, argv: Sequence[str] = ()):
        self.out, self.argv = out, list(argv)

    def check(self, session: Any) -> None:
        """Nothing to check."""

    def on_start(self, session: Any) -> None:
        remove_temporaries(self.out)  # of a run killed while it replaced a file
        document = session.document(argv=self.argv)
        write_json(self.out / "config.json", document)

    def on_chunk(self, session: Any, report: ChunkReport) -> None:
        """Nothing between chunks."""

    def close(self, session: Any, run: ChunkedRun | None) -> None:
        if run is None:
            return
        config, population = session.spec.config, session.population
        session_updates = run.updates_done - session.updates_done
        summary = build_summary(config, population, run, session_updates)
        write_json(self.out / "summary.json", summary)
        written = ["config.json", "metrics.csv", "summary.json"]
        if run.updates_done > 0:
            env_steps = session.trainer.env_steps(range(1, run.updates_done + 1))
            title = f"{config.env} ({population.num_runs} runs)"
            plots.plot_learning_curve(
                self.out / "learning_curve.png", population, run.metrics, env_steps, title
            )
            written += ["learning_curve.png", *population_plots(self.out, session, run)]
        console.print_summary(summary)
        print(f"wrote {self.out}/{', '.join([*written, 'checkpoints/'])}")


def evolved(log: Any) -> bool:
    """Whether a strategy's `log` is PBT's, with at least one step."""
    return isinstance(log, PBTLog) and len(log.update) > 0


def population_plots(out: Path, session: Any, run: ChunkedRun) -> list[str]:
    """`sweep.png` for a sweep or a search (final return against each hyperparameter) and,
    with PBT, `population.png` (the searched values through the steps); the names written."""
    population, written = session.population, []
    searched = list(population.searched[0]) if population.searched else []
    names = [*population.swept[0], *searched] if population.num_runs > 1 else []
    if names:
        values = {
            name: np.asarray(getattr(population.hyperparams, name), np.float64) for name in names
        }
        if evolved(run.log):
            values = {n: np.asarray(getattr(run.log.hyperparams, n))[-1] for n in names}
        finals = final_returns(run.metrics)
        plots.plot_sweep(out / "sweep.png", values, finals, grid=not searched)
        written.append("sweep.png")
    log = run.log
    if evolved(log):
        initial = {n: np.array([s[n] for s in population.searched]) for n in searched}
        fitness = np.asarray(log.fitness[-1], np.float64)
        steps = session.spec.config.batch_size
        plots.plot_population(out / "population.png", initial, log, fitness, steps)
        written.append("population.png")
    return written


def default_hooks(
    session: Any, out: Path | None, argv: Sequence[str] = (), writes: bool | None = None
) -> list[Any]:
    """The hooks of `purejaxppo train`, in the order they must run: evaluation (its returns
    go to the logs), rendering, the metric sinks, progress, checkpoints, the run's files, the
    tracker. `writes` (default: this is process 0) decides the files and the console. A
    missing extra (tensorboardX, wandb, the drawings) fails here, before anything compiles."""
    loop = session.loop
    writes = jax.process_index() == 0 if writes is None else writes
    if out is not None and writes:
        out.mkdir(parents=True, exist_ok=True)
    hooks: list[Any] = [EvalHook(loop.eval_every, loop.eval_episodes)] if loop.eval_every else []
    if loop.render_every and out is not None:
        hooks.append(RenderHook(out, loop.render_every, writes))  # checks its env before the run
    if writes and out is not None:
        hooks += metric_sinks(session, out)
    if writes and loop.progress:
        hooks.append(ProgressHook())
    if out is not None:
        hooks.append(CheckpointHook(out, loop.checkpoint_every))
    if writes and out is not None:
        if isinstance(session.spec.strategy, PBTConfig):
            hooks.append(PBTCsv(out / "pbt.csv", tuple(session.spec.search)))
        hooks.append(RunFilesHook(out, argv))
    if writes and out is not None and loop.wandb_project:
        # Last: it closes after the run's files, so the final plots are there to log.
        group, name = loop.wandb_group or out.name, loop.wandb_name or out.name
        hooks.append(WandbLog(out, session, loop.wandb_project, group, name))
    return hooks


def metric_sinks(session: Any, out: Path) -> list[Any]:
    """`metrics.csv` and, when on, TensorBoard; the missing extras are found first, before
    any file is made (the tracker itself is made last, but checked here)."""
    loop, population = session.loop, session.population
    check_sink_extras(loop)
    steps = session.spec.config.batch_size
    sinks: list[Any] = [MetricsCsv(out / "metrics.csv", population, steps)]
    if loop.tensorboard:
        sinks.append(TensorBoardLog(out / "tensorboard", population, steps))
    return sinks
