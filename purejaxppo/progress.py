"""A rich progress bar for the chunked loop: updates, env steps, SPS, mean return so far."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from purejaxppo.loop import ChunkDone
from purejaxppo.train import Metrics


def recent_mean_return(metrics: Metrics) -> float:
    """Mean over runs of each run's mean return over the chunk's updates that ended an
    episode (NaN if no run finished one); `metrics` numpy `[R, k]`."""
    returns = np.asarray(metrics.episode_return, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(np.nanmean(returns, axis=-1)))


class TrainProgress:
    """`with TrainProgress(...) as bar: ... bar.update(done)`; silent when not `enabled`."""

    def __init__(self, num_updates: int, updates_done: int, steps_per_update: int, enabled: bool):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.steps_per_update = steps_per_update  # env steps of one update, all runs
        self.progress = Progress(
            TextColumn("updates"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "train", total=num_updates, completed=updates_done, info=""
        )

    def update(self, done: ChunkDone) -> None:
        steps = done.updates_done * self.steps_per_update
        sps = done.session_updates * self.steps_per_update / max(done.run_s, 1e-9)
        mean_return = recent_mean_return(done.chunk_metrics)
        shown = "n/a" if not np.isfinite(mean_return) else f"{mean_return:.1f}"
        info = f"{steps:,} env steps  {sps:,.0f} SPS  return {shown}"
        self.progress.update(self.task, completed=done.updates_done, info=info)

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
