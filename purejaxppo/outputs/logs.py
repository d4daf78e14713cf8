"""Metric logs written as chunks finish: `metrics.csv` and TensorBoard event files."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.ppo.types import METRIC_NAMES, Metrics
from purejaxppo.runs.population import Population

Evaluations = Mapping[int, np.ndarray] | None
"""`{update: [R] mean deterministic return}` of the evaluations after those updates."""


class MetricsSink:
    """A training hook that writes each chunk's metrics somewhere: one row (or scalar set) per
    run x update, with the deterministic evaluations where they ran. A new sink (another
    tracker) is one subclass with `append` (and `close` if it holds files open)."""

    def __init__(self, population: Population, env_steps_per_update: int):
        self.population = population
        self.env_steps_per_update = env_steps_per_update

    def append(self, metrics: Metrics, first_update: int, evaluations: Evaluations = None) -> None:
        """Updates `first_update + 1 ...` of `metrics` `[R, k]`; `evaluations` maps an update
        to the `[R]` mean returns of the evaluation after it."""
        raise NotImplementedError

    def on_start(self, session: Any) -> None:
        """Nothing: a sink only sees what is trained from now on."""

    def on_chunk(self, session: Any, report: Any) -> None:
        self.append(report.done.chunk_metrics, report.first_update, report.evaluated)

    def close(self, session: Any, run: Any) -> None:
        """Nothing to close."""


class MetricsCsv(MetricsSink):
    """`metrics.csv`: one row per run x update with run, seed, swept values, update,
    env_steps, every metric and `eval_return` (the mean deterministic return where an
    evaluation ran at that update, else empty). Rows come chunk by chunk, each chunk's rows
    run by run; a resumed run's file starts with the restored updates."""

    def __init__(self, path: Path, population: Population, env_steps_per_update: int):
        super().__init__(population, env_steps_per_update)
        self.path = path
        swept_names = list(population.swept[0]) if population.swept else []
        header = [
            "run",
            "seed",
            *(f"setting.{n}" for n in swept_names),
            "update",
            "env_steps",
            *METRIC_NAMES,
            "eval_return",
        ]
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(header)

    def on_start(self, session: Any) -> None:
        if session.restored is not None:
            self.append(session.restored.metrics, 0, session.evaluations)

    def append(self, metrics: Metrics, first_update: int, evaluations: Evaluations = None) -> None:
        columns = [np.asarray(getattr(metrics, name)) for name in METRIC_NAMES]
        evaluations = evaluations or {}
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            for run in range(self.population.num_runs):
                prefix = [run, self.population.seeds[run], *self.population.swept[run].values()]
                values = zip(*(c[run].tolist() for c in columns), strict=True)
                for i, row in enumerate(values):
                    update = first_update + i + 1
                    evaluated = evaluations.get(update)
                    evaluation = "" if evaluated is None else _fmt(float(evaluated[run]))
                    steps = update * self.env_steps_per_update
                    writer.writerow([*prefix, update, steps, *map(_fmt, row), evaluation])


class TensorBoardLog(MetricsSink):
    """TensorBoard event files, one directory (one tag set) per run: `<dir>/run-<r>-seed-<s>`
    with the swept values in the name. Needs `pip install purejaxppo[tensorboard]`."""

    def __init__(self, directory: Path, population: Population, env_steps_per_update: int):
        super().__init__(population, env_steps_per_update)
        summary_writer = tensorboard_writer_class()
        self.writers = [
            summary_writer(str(directory / run_label(population, run)))
            for run in range(population.num_runs)
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

    def close(self, session: Any = None, run: Any = None) -> None:
        for writer in self.writers:
            writer.close()


def tensorboard_writer_class() -> Any:
    """tensorboardX's `SummaryWriter`, or a `ConfigError` that says how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError(
            "tensorboard needs tensorboardX: pip install 'purejaxppo[tensorboard]'"
        ) from None
    return SummaryWriter


def run_label(population: Population, run: int) -> str:
    setting = "".join(f"-{k}={v:g}" for k, v in population.swept[run].items())
    return f"run-{run:04d}-seed-{population.seeds[run]}{setting}"


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if not np.isfinite(value) else f"{value:.6g}"
