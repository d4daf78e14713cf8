"""What a population's runs did, on the host: the best run (with its PBT lineage and
hyperparameter changes), each run's health, and `pbt.csv`.

Health flags name the instabilities PPO users otherwise hunt for in the curves:

- `nan`: a loss became NaN or infinite;
- `kl`: the approximate KL exceeded its bound in more than a tenth of the updates (the bound:
  4 x `target_kl` when the target-KL stop is on, else 0.1);
- `entropy_collapse`: the entropy fell under 5% of its first update's while the final return
  is still below the best the run reached (a policy that stopped exploring too early);
- `value_divergence`: the value loss over the last tenth of the updates is over 100 times the
  median of the tenths (or not finite).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.config import PPOConfig
from purejaxppo.metrics import final_returns
from purejaxppo.outputs.files import replace_file, writing
from purejaxppo.runs.pbt import PBTLog
from purejaxppo.runs.population import Population

KL_BOUND_FACTOR, KL_BOUND_OFF = 4.0, 0.1
KL_SHARE = 0.1
ENTROPY_FLOOR = 0.05
VALUE_DIVERGENCE = 100.0


def tenth_means(values: np.ndarray) -> np.ndarray:
    """Means of `values` `[U]` over ten consecutive near-equal parts (fewer if U < 10)."""
    parts = np.array_split(np.asarray(values, np.float64), min(10, len(values)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array([np.nanmean(part) for part in parts])


def run_health(metrics: Any, run: int, target_kl: float, config: PPOConfig) -> list[str]:
    """The health flags of run `run` of `metrics` (numpy `[R, U]`), with its `target_kl`."""
    flags = []
    loss = np.asarray(metrics.total_loss[run], np.float64)
    if loss.size == 0:
        return flags
    if not np.all(np.isfinite(loss)):
        flags.append("nan")
    bound = KL_BOUND_FACTOR * target_kl if config.target_kl_stop else KL_BOUND_OFF
    kl = np.asarray(metrics.approx_kl[run], np.float64)
    if np.mean(kl > bound) > KL_SHARE:
        flags.append("kl")
    entropy = np.asarray(metrics.entropy[run], np.float64)
    returns = tenth_means(metrics.episode_return[run])
    collapsed = abs(entropy[-1]) < ENTROPY_FLOOR * abs(entropy[0])
    if collapsed and np.isfinite(returns[-1]) and returns[-1] < np.nanmax(returns):
        flags.append("entropy_collapse")
    value = tenth_means(metrics.value_loss[run])
    if not np.isfinite(value[-1]) or value[-1] > VALUE_DIVERGENCE * np.median(value):
        flags.append("value_divergence")
    return flags


def population_health(metrics: Any, population: Population, config: PPOConfig) -> list[list[str]]:
    """`run_health` of every run."""
    target_kl = np.broadcast_to(np.asarray(population.hyperparams.target_kl), population.num_runs)
    return [
        run_health(metrics, run, float(target_kl[run]), config)
        for run in range(population.num_runs)
    ]


def lineage(log: PBTLog, run: int) -> list[int]:
    """The runs whose parameters run `run` continued, one per segment between PBT steps
    (S + 1 entries for S steps): entry k trained segment k, the last is `run` itself."""
    holders = [run]
    for step in range(len(log.update) - 1, -1, -1):
        holders.append(int(log.parents[step, holders[-1]]))
    return holders[::-1]


def best_run(
    population: Population, metrics: Any, log: PBTLog | None, searched: tuple[str, ...]
) -> dict[str, Any] | None:
    """The run with the highest final return, its hyperparameters and seed; with PBT also
    its lineage and the changes of its searched hyperparameters along it (None: no finite
    return)."""
    finals = final_returns(metrics)
    if not np.isfinite(finals).any():
        return None
    run = int(np.nanargmax(finals))
    values = {
        name: float(np.asarray(getattr(population.hyperparams, name))[run]) for name in searched
    }
    best: dict[str, Any] = {
        "run": run,
        "seed": population.seeds[run],
        "final_return": float(finals[run]),
        "setting": population.swept[run],
        "hyperparams": values,
    }
    if log is None:
        return best
    holders = lineage(log, run)
    starts = [0, *(int(u) for u in log.update)]
    changes = []
    for segment, holder in enumerate(holders):
        if segment == 0:
            current = {name: population.searched[holder][name] for name in searched}
        else:
            step_values = log.hyperparams
            current = {
                name: float(np.asarray(getattr(step_values, name))[segment - 1, holder])
                for name in searched
            }
        changes.append({"from_update": starts[segment], "run": holder, **current})
    best["hyperparams"] = {name: changes[-1][name] for name in searched}
    best["lineage"] = holders
    best["changes"] = changes
    return best


class PBTCsv:
    """`pbt.csv`: one row per PBT step x run: update, run, parent, replaced, fitness and every
    searched hyperparameter after the step. A resumed run's file starts with the restored
    steps."""

    def __init__(self, path: Path, searched: tuple[str, ...]):
        self.path, self.searched = path, searched

    def check(self, session: Any) -> None:
        """Nothing to check."""

    def on_start(self, session: Any) -> None:
        header = ["update", "run", "parent", "replaced", "fitness", *self.searched]
        replace_file(self.path, lambda file: csv.writer(file).writerow(header))
        carried = session.restored_carried()
        if carried is not None and carried.log is not None:
            self.append(carried.log)

    def on_chunk(self, session: Any, report: Any) -> None:
        if report.done.log is not None:
            self.append(report.done.log)

    def close(self, session: Any, run: Any) -> None:
        """Nothing to close."""

    def append(self, log: PBTLog) -> None:
        values = [np.asarray(getattr(log.hyperparams, name)) for name in self.searched]
        with writing(self.path), self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            for step, update in enumerate(np.asarray(log.update)):
                for run in range(log.parents.shape[1]):
                    fitness = float(log.fitness[step, run])
                    writer.writerow(
                        [
                            int(update),
                            run,
                            int(log.parents[step, run]),
                            int(bool(log.replaced[step, run])),
                            f"{fitness:.6g}" if np.isfinite(fitness) else "",
                            *(f"{float(v[step, run]):.6g}" for v in values),
                        ]
                    )
