"""Metric logs written as chunks finish: `metrics.csv`, TensorBoard event files and
Weights & Biases runs, all one `MetricsSink` interface."""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.metrics import final_returns
from purejaxppo.outputs.files import replace_file, replace_text, writing
from purejaxppo.ppo.types import METRIC_NAMES, Metrics
from purejaxppo.runs.population import Population

Evaluations = Mapping[int, np.ndarray] | None
"""`{update: [R] mean deterministic return}` of the evaluations after those updates."""


class MetricsSink:
    """A training hook that writes each chunk's metrics somewhere: one row (or scalar set) per
    run x update, with the deterministic evaluations where they ran, and the chunk's
    animations. A new sink (another tracker) is one subclass with `append` (and `add_movie`
    if it shows animations, `close` if it holds files open)."""

    def __init__(self, population: Population, env_steps_per_update: int):
        self.population = population
        self.env_steps_per_update = env_steps_per_update

    def append(self, metrics: Metrics, first_update: int, evaluations: Evaluations = None) -> None:
        """Updates `first_update + 1 ...` of `metrics` `[R, k]`; `evaluations` maps an update
        to the `[R]` mean returns of the evaluation after it."""
        raise NotImplementedError

    def check(self, session: Any) -> None:
        """Nothing to check (a tracker that must log in checks here, writing no file)."""

    def on_start(self, session: Any) -> None:
        """Nothing: a sink only sees what is trained from now on."""

    def add_movie(self, tag: str, path: Path, update: int) -> None:
        """Nothing: this sink keeps numbers only. `path` is a GIF of run 0 after `update`."""

    def on_chunk(self, session: Any, report: Any) -> None:
        self.append(report.done.chunk_metrics, report.first_update, report.evaluated)
        for tag, path in report.movies.items():
            self.add_movie(tag, path, report.done.updates_done)

    def close(self, session: Any, run: Any) -> None:
        """Nothing to close."""


class MetricsCsv(MetricsSink):
    """`metrics.csv`: one row per run x update with run, seed, swept values, update,
    env_steps, every metric and `eval_return` (the mean deterministic return where an
    evaluation ran at that update, else empty). Rows are appended chunk by chunk while the
    run trains; at its end (or stop) the file is rewritten whole in (run, update) order, so a
    resumed run's file equals an uninterrupted one byte for byte. A resumed run's file starts
    again from the checkpoint's updates."""

    def __init__(self, path: Path, population: Population, env_steps_per_update: int):
        super().__init__(population, env_steps_per_update)
        self.path = path
        swept_names = list(population.swept[0]) if population.swept else []
        self.header = [
            "run",
            "seed",
            *(f"setting.{n}" for n in swept_names),
            "update",
            "env_steps",
            *METRIC_NAMES,
            "eval_return",
        ]

    def on_start(self, session: Any) -> None:
        restored = session.restored
        metrics = None if restored is None else restored.metrics
        self.write_all(metrics, session.evaluations)

    def close(self, session: Any, run: Any) -> None:
        if run is not None:
            self.write_all(run.metrics, session.evaluations)

    def write_all(self, metrics: Metrics | None, evaluations: Evaluations) -> None:
        """The header and every row of `metrics` (None: no rows), replacing the file."""

        def write(file: Any) -> None:
            writer = csv.writer(file)
            writer.writerow(self.header)
            if metrics is not None:
                writer.writerows(self.rows(metrics, 0, evaluations))

        replace_file(self.path, write)

    def append(self, metrics: Metrics, first_update: int, evaluations: Evaluations = None) -> None:
        with writing(self.path), self.path.open("a", newline="") as f:
            csv.writer(f).writerows(self.rows(metrics, first_update, evaluations))

    def rows(
        self, metrics: Metrics, first_update: int, evaluations: Evaluations
    ) -> Iterator[list[Any]]:
        """The rows of updates `first_update + 1 ...` of `metrics` `[R, k]`, run by run."""
        columns = [np.asarray(getattr(metrics, name)) for name in METRIC_NAMES]
        evaluations = evaluations or {}
        for run in range(self.population.num_runs):
            prefix = [run, self.population.seeds[run], *self.population.swept[run].values()]
            values = zip(*(c[run].tolist() for c in columns), strict=True)
            for i, row in enumerate(values):
                update = first_update + i + 1
                evaluated = evaluations.get(update)
                evaluation = "" if evaluated is None else _fmt(float(evaluated[run]))
                steps = update * self.env_steps_per_update
                yield [*prefix, update, steps, *map(_fmt, row), evaluation]


CSV_ROW_BYTES = 16 * (len(METRIC_NAMES) + 6)
"""A generous size of one `metrics.csv` row, for the disk-room check before a run."""


class TensorBoardLog(MetricsSink):
    """TensorBoard event files, one directory (one tag set) per run: `<dir>/run-<r>-seed-<s>`
    with the swept values in the name. Needs `pip install purejaxppo[tensorboard]`."""

    def __init__(self, directory: Path, population: Population, env_steps_per_update: int):
        super().__init__(population, env_steps_per_update)
        self.directory, self.writer_class = directory, tensorboard_writer_class()
        self.writers: list[Any] = []

    def on_start(self, session: Any) -> None:
        """Open one writer per run (its event file is made here, not before the checks)."""
        self.writers = [
            self.writer_class(str(self.directory / run_log_name(self.population, run)))
            for run in range(self.population.num_runs)
        ]

    def append(self, metrics: Metrics, first_update: int, evaluations: Evaluations = None) -> None:
        columns = {name: np.asarray(getattr(metrics, name)) for name in METRIC_NAMES}
        for run, writer in enumerate(self.writers):
            for i in range(columns["total_loss"].shape[-1]):
                steps = (first_update + i + 1) * self.env_steps_per_update
                for name, values in columns.items():
                    value = float(values[run, i])
                    if np.isfinite(value):
                        writer.add_scalar(f"train/{name}", value, steps)
            for update, returns in sorted((evaluations or {}).items()):
                if np.isfinite(returns[run]):
                    steps = update * self.env_steps_per_update
                    writer.add_scalar("eval/return", float(returns[run]), steps)
            writer.flush()

    def add_movie(self, tag: str, path: Path, update: int) -> None:
        """The GIF as an image summary of run 0 (TensorBoard's image tab plays it)."""
        from PIL import Image
        from tensorboardX.proto.summary_pb2 import Summary

        with Image.open(path) as gif:
            width, height = gif.size
        image = Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=path.read_bytes()
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        steps = update * self.env_steps_per_update
        # tensorboardX's add_video re-encodes through moviepy; the GIF's own bytes need none.
        self.writers[0]._get_file_writer().add_summary(summary, steps)
        self.writers[0].flush()

    def close(self, session: Any = None, run: Any = None) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []


class WandbLog(MetricsSink):
    """Weights & Biases: one tracker run per training run, named `<name>-run-<r>`, all in one
    group, each with the run's config, hyperparameters, seed and swept or searched values as
    its tracker config, so the tracker's own grouping, tables and parallel coordinates work
    across seeds and settings. The same metrics as TensorBoard (`train/<metric>`,
    `eval/return`) against `env_steps`; animations and the final plots go to run 0. The run
    ids are kept in `TRACKER_IDS`, so a resumed run logs on into the same tracker runs. Needs
    `pip install 'purejaxppo[wandb]'`; `WANDB_MODE`, `WANDB_DIR` and the rest are wandb's."""

    def __init__(self, out: Path, session: Any, project: str, group: str, name: str):
        population = session.population
        super().__init__(population, session.spec.config.batch_size)
        self.out, self.wandb = out, wandb_module()
        self.project, self.group, self.name = project, group, name
        self.ids = saved_tracker_ids(out, population.num_runs)
        self.resumed = self.ids is not None  # the tracker runs hold the restored updates
        self.runs: list[Any] = []

    def check(self, session: Any) -> None:
        """Start the tracker runs (a tracker that cannot start refuses the run here, before
        any file is written)."""
        population, document = self.population, session.document()
        ids = self.ids or [secrets.token_hex(6) for _ in range(population.num_runs)]
        for run, run_id in enumerate(ids):
            config = tracker_config(document, population, run)
            name = f"{self.name}-run-{run}"
            self.runs.append(self.open_run(run_id, self.project, self.group, name, config))
        self.ids = ids

    def open_run(self, run_id: str, project: str, group: str, name: str, config: dict) -> Any:
        """One tracker run (resumed if `run_id` exists), its metrics against `env_steps`; a
        tracker that cannot start is a `ConfigError`, after the runs opened are finished."""
        directory = os.environ.get("WANDB_DIR") or str(self.out)
        try:
            tracker = self.wandb.init(
                project=project,
                group=group,
                name=name,
                id=run_id,
                resume="allow",
                config=config,
                dir=directory,
                job_type="train",
                reinit="create_new",
            )
        except Exception as error:  # wandb's errors: no login, no network, a bad project
            for opened in self.runs:
                opened.finish(exit_code=1)
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            raise ConfigError(
                f"wandb_project = {project!r}: the tracker did not start ({reason}); "
                "WANDB_MODE=offline logs without an account"
            ) from None
        tracker.define_metric("env_steps")
        tracker.define_metric("*", step_metric="env_steps")
        return tracker

    def on_start(self, session: Any) -> None:
        replace_text(self.out / TRACKER_IDS, json.dumps({"wandb": self.ids}) + "\n")
        if session.restored is not None and not self.resumed:
            self.append(session.restored.metrics, 0, session.evaluations)

    def append(self, metrics: Metrics, first_update: int, evaluations: Evaluations = None) -> None:
        """One tracker row per run x update: every finite metric, the evaluation where one
        ran, the update and its env steps."""
        columns = {name: np.asarray(getattr(metrics, name)) for name in METRIC_NAMES}
        evaluations = evaluations or {}
        for run, tracker in enumerate(self.runs):
            for i in range(columns["total_loss"].shape[-1]):
                update = first_update + i + 1
                row = {f"train/{n}": float(v[run, i]) for n, v in columns.items()}
                row = {k: v for k, v in row.items() if np.isfinite(v)}
                evaluated = evaluations.get(update)
                if evaluated is not None and np.isfinite(evaluated[run]):
                    row["eval/return"] = float(evaluated[run])
                tracker.log(row | {"update": update, "env_steps": self.steps(update)})

    def steps(self, update: int) -> int:
        """The env steps of one run after `update` updates."""
        return update * self.env_steps_per_update

    def add_movie(self, tag: str, path: Path, update: int) -> None:
        movie = self.wandb.Video(str(path), format="gif")
        self.runs[0].log({tag: movie, "env_steps": self.steps(update)})

    def close(self, session: Any, run: Any) -> None:
        if run is not None and self.runs:
            finals = final_returns(run.metrics)
            for tracker, final in zip(self.runs, finals, strict=True):
                if np.isfinite(final):
                    tracker.summary["final_return"] = float(final)
            plots = {p.stem: self.wandb.Image(str(p)) for p in sorted(self.out.glob("*.png"))}
            if plots:
                self.runs[0].log(
                    {f"plots/{k}": v for k, v in plots.items()}
                    | {"env_steps": self.steps(run.updates_done)}
                )
        for tracker in self.runs:
            tracker.finish(exit_code=0 if run is not None else 1)
        self.runs = []


TRACKER_IDS = "tracker-runs.json"
"""In the output directory: the tracker run ids, so that a resumed run goes on logging into
the same tracker runs."""


def saved_tracker_ids(out: Path, num_runs: int) -> list[str] | None:
    """The wandb run ids an earlier session of this run wrote, if it wrote one per run."""
    path = out / TRACKER_IDS
    if not path.exists():
        return None
    ids = json.loads(path.read_text()).get("wandb")
    return ids if isinstance(ids, list) and len(ids) == num_runs else None


def tracker_config(document: dict[str, Any], population: Population, run: int) -> dict[str, Any]:
    """One training run's tracker config: the run document's config, this run's
    hyperparameters (its swept, searched or evolved start values included) and seed."""
    return {
        "env": document.get("env"),
        "config": document.get("config"),
        "hyperparams": population.run_hyperparams(run),
        "run": run,
        "seed": population.seeds[run],
        "setting": dict(population.swept[run]),
        "searched": dict(population.searched[run]) if population.searched else {},
        "population": {"name": document.get("name"), "runs": population.num_runs},
    }


def check_sink_extras(loop: Any) -> None:
    """A `ConfigError` with the install line for each extra the loop options' sinks need
    and this machine lacks (tensorboardX, wandb)."""
    if loop.tensorboard:
        tensorboard_writer_class()
    if loop.wandb_project:
        wandb_module()


def wandb_module() -> Any:
    """The wandb package, or a `ConfigError` that says how to install it."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs wandb: pip install 'purejaxppo[wandb]'") from None
    return wandb


def tensorboard_writer_class() -> Any:
    """tensorboardX's `SummaryWriter`, or a `ConfigError` that says how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError(
            "tensorboard needs tensorboardX: pip install 'purejaxppo[tensorboard]'"
        ) from None
    return SummaryWriter


def run_log_name(population: Population, run: int) -> str:
    """A run's directory in the TensorBoard logs: its index, seed and swept setting."""
    setting = "".join(f"-{k}={v:g}" for k, v in population.swept[run].items())
    return f"run-{run:04d}-seed-{population.seeds[run]}{setting}"


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if not np.isfinite(value) else f"{value:.6g}"
