"""A run's figures on the host: `summary.json` (final returns, timing, the best run, every
run's health), the evaluations in a run's document, and the JSON writer of the run's files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.config import PPOConfig
from purejaxppo.metrics import final_returns, return_stats
from purejaxppo.outputs.files import replace_text
from purejaxppo.outputs.machine import device_description, library_versions
from purejaxppo.outputs.populations import best_run, population_health
from purejaxppo.runs.pbt import PBTLog
from purejaxppo.runs.population import Population


def build_summary(
    config: PPOConfig, population: Population, run: Any, session_updates: int | None = None
) -> dict[str, Any]:
    """Final returns and figures of a `run` (a `ChunkedRun`: `metrics` `[R, updates done]`,
    `timing` and its strategy's `log`), the best run and every run's health flags.
    SPS counts the `session_updates` run in this process (all of them by default; fewer
    after `--resume`)."""
    metrics, timing = run.metrics, run.timing
    finals = final_returns(metrics)
    updates_done = int(np.asarray(metrics.total_loss).shape[-1])
    session_updates = updates_done if session_updates is None else session_updates
    env_steps_per_run = updates_done * config.batch_size
    env_steps = env_steps_per_run * population.num_runs
    session_steps = session_updates * config.batch_size * population.num_runs
    summary: dict[str, Any] = {
        "env": config.env,
        "num_runs": population.num_runs,
        "num_updates": config.num_updates,
        "updates_done": updates_done,
        "complete": updates_done == config.num_updates,
        "env_steps_per_run": env_steps_per_run,
        "env_steps": env_steps,
        "final_return": return_stats(finals),
        "sps": session_steps / timing.run_s if timing.run_s > 0 else None,
        "compile_s": timing.compile_s,
        "run_s": timing.run_s,
        "device": device_description(),
        "versions": library_versions(),
    }
    if any(population.swept):
        summary["groups"] = [
            {"setting": setting, "final_return": return_stats(finals[runs])}
            for setting, runs in population.groups()
        ]
    if updates_done:
        searched = tuple(population.searched[0]) if population.searched else ()
        summary["best"] = best_run(population, metrics, evolution_log(run), searched)
        summary["health"] = population_health(metrics, population, config)
    return summary


def evolution_log(run: Any) -> PBTLog | None:
    """The PBT steps of `run` (None: its runs did not evolve)."""
    log = getattr(run, "log", None)
    return log if isinstance(log, PBTLog) else None


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON in `path`, replaced whole (`outputs.files.replace_text`)."""
    replace_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value)}")


def evaluations_to_json(evaluations: Mapping[int, np.ndarray]) -> dict[str, list[float | None]]:
    """`{update: [R] returns}` as checkpoint metadata: string keys, NaN as None."""
    return {
        str(update): [float(v) if np.isfinite(v) else None for v in np.asarray(returns)]
        for update, returns in sorted(evaluations.items())
    }


def evaluations_from_json(data: Mapping[str, list[float | None]]) -> dict[int, np.ndarray]:
    """The inverse of `evaluations_to_json`."""
    return {
        int(update): np.array([np.nan if v is None else v for v in returns], dtype=np.float64)
        for update, returns in data.items()
    }
