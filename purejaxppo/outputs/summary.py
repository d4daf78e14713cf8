"""A run's figures on the host: summary.json, config.json, the device and library versions."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purejaxppo.config import PPOConfig
from purejaxppo.metrics import final_returns, return_stats
from purejaxppo.outputs.files import replace_text
from purejaxppo.outputs.populations import best_run, population_health
from purejaxppo.runs.population import Population

LIBRARIES = ("purejaxppo", "jax", "jaxlib", "flax", "optax", "gymnax", "chex")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return f"{device.platform}:{kind} x{jax.device_count()}"


def device_slug() -> str:
    """A short directory name for this machine: `cpu-<cores>core-<vendor>` or the
    accelerator's kind, e.g. `nvidia-h100-80gb-hbm3`."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        model = platform.processor() or "cpu"
        try:
            text = Path("/proc/cpuinfo").read_text()
            model = re.search(r"model name\s*:\s*(.+)", text).group(1)
        except (OSError, AttributeError):
            pass
        vendor = "amd" if "AMD" in model else "intel" if "Intel" in model else "cpu"
        return f"cpu-{os.cpu_count()}core-{vendor}"
    return re.sub(r"[^a-z0-9]+", "-", device.device_kind.lower()).strip("-")


def results_dir(out: Path | None, results_root: Path, *parts: str) -> Path:
    """`out`, or `results_root/<device_slug>/<parts...>` by default; created if missing."""
    path = out or results_root.joinpath(device_slug(), *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_summary(
    config: PPOConfig, population: Population, run: Any, session_updates: int | None = None
) -> dict[str, Any]:
    """Final returns and figures of a `run` (a `ChunkedRun`: `metrics` `[R, updates done]`,
    `timing` and, with PBT, `pbt_log`), the best run and every run's health flags.
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
        summary["best"] = best_run(population, metrics, getattr(run, "pbt_log", None), searched)
        summary["health"] = population_health(metrics, population, config)
    return summary


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
