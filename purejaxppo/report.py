"""Outputs of a run on the host: metrics.csv, summary.json, config.json, learning_curve.png."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import platform
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purejaxppo.config import ConfigError, Hyperparams, PPOConfig
from purejaxppo.population import Population, Timing, final_returns
from purejaxppo.train import METRIC_NAMES, Metrics

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


def return_stats(values: np.ndarray) -> dict[str, Any]:
    """mean/std/min/max over runs (NaN-aware: a run with no finished episode is skipped)."""
    finite = values[np.isfinite(values)]
    per_run = [None if not np.isfinite(v) else round(float(v), 4) for v in values]
    if finite.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "per_run": per_run}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "per_run": per_run,
    }


def build_summary(
    config: PPOConfig,
    population: Population,
    metrics: Metrics,
    timing: Timing,
    session_updates: int | None = None,
) -> dict[str, Any]:
    """Final returns and figures of a run whose `metrics` are `[R, updates done]`.
    SPS counts the `session_updates` run in this process (all of them by default; fewer
    after `--resume`)."""
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
    return summary


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value)}")


def write_config(
    path: Path,
    config: PPOConfig,
    hp: Hyperparams,
    seed: int,
    num_seeds: int,
    sweep: dict[str, list[float]],
    extra: dict[str, Any],
) -> None:
    write_json(
        path,
        {
            "config": config.to_dict(),
            "hyperparams": {k: float(v) for k, v in hp.to_dict().items()},
            "seed": seed,
            "num_seeds": num_seeds,
            "sweep": sweep,
            **extra,
        },
    )


class MetricsCsv:
    """`metrics.csv`, appended chunk by chunk: one row per run x update with run, seed, swept
    values, update, env_steps, every metric and `eval_return` (the mean deterministic return
    where an evaluation ran at that update, else empty). Rows come chunk by chunk, each
    chunk's rows run by run."""

    def __init__(self, path: Path, population: Population, env_steps_per_update: int):
        self.path, self.population = path, population
        self.env_steps_per_update = env_steps_per_update
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

    def append(
        self,
        metrics: Metrics,
        first_update: int,
        evaluations: Mapping[int, np.ndarray] | None = None,
    ) -> None:
        """Rows for updates `first_update + 1 ...` of `metrics` `[R, k]`; `evaluations` maps
        an update to the `[R]` returns of the evaluation after it (its `eval_return`)."""
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


class TensorBoardLog:
    """TensorBoard event files, one directory (one tag set) per run: `<dir>/run-<r>-seed-<s>`
    with the swept values in the name. Needs `pip install purejaxppo[tensorboard]`."""

    def __init__(self, directory: Path, population: Population, env_steps_per_update: int):
        summary_writer = tensorboard_writer_class()
        self.env_steps_per_update = env_steps_per_update
        self.writers = [
            summary_writer(str(directory / run_label(population, run)))
            for run in range(population.num_runs)
        ]

    def append(
        self,
        metrics: Metrics,
        first_update: int,
        evaluations: Mapping[int, np.ndarray] | None = None,
    ) -> None:
        """Scalars of updates `first_update + 1 ...` of `metrics` `[R, k]` (as `MetricsCsv`)."""
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

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def tensorboard_writer_class() -> Any:
    """tensorboardX's `SummaryWriter`, or a `ConfigError` that says how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs tensorboardX: pip install 'purejaxppo[tensorboard]'"
        ) from None
    return SummaryWriter


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


def run_label(population: Population, run: int) -> str:
    setting = "".join(f"-{k}={v:g}" for k, v in population.swept[run].items())
    return f"run-{run:04d}-seed-{population.seeds[run]}{setting}"


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if not np.isfinite(value) else f"{value:.6g}"


BANDS = ("minmax", "std")


def curve_band(curves: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs of `curves` `[runs, updates]` (NaN-aware) and its band: min-max over
    runs, or mean -/+ one std over runs."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    with warnings.catch_warnings():  # all-NaN columns: no run has finished an episode yet
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
        if band == "std":
            std = np.nanstd(curves, axis=0)
            return mean, mean - std, mean + std
        return mean, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)


def plot_learning_curve(
    path: Path,
    population: Population,
    metrics: Metrics,
    env_steps: np.ndarray,
    title: str,
    band: str = "minmax",
    reference: tuple[float, str] | None = None,
) -> None:
    """Mean completed-episode return across runs with a band (`"minmax"` over runs or
    `"std"`: mean +/- one std), one line per setting; `reference=(return, label)` draws a
    dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    returns = np.asarray(metrics.episode_return, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    band_label = "± std" if band == "std" else "min-max"
    for setting, runs in population.groups():
        mean, low, high = curve_band(returns[runs], band)
        label = ", ".join(f"{k}={v:g}" for k, v in setting.items()) or "mean"
        (line,) = ax.plot(
            env_steps, mean, lw=1.5, label=f"{label} ({len(runs)} runs, {band_label})"
        )
        ax.fill_between(env_steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    if reference is not None:
        ax.axhline(reference[0], color="0.3", ls="--", lw=1, label=reference[1])
    ax.set_xlabel("environment steps per run")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(stats: dict[str, Any]) -> tuple[str, str, str]:
        if stats["mean"] is None:
            return "n/a", "n/a", "n/a"
        return f"{stats['mean']:.1f}", f"{stats['std']:.1f}", f"{stats['min']:.1f}"

    table = Table(title=f"{summary['env']}: {summary['num_runs']} runs")
    for column in ("setting", "runs", "final return", "std", "min"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    groups = summary.get("groups") or [{"setting": {}, "final_return": summary["final_return"]}]
    for group in groups:
        setting = ", ".join(f"{k}={v:g}" for k, v in group["setting"].items()) or "all"
        runs = len(group["final_return"]["per_run"])
        table.add_row(setting, str(runs), *fmt(group["final_return"]))
    console = Console()
    console.print(table)
    console.print(
        f"env steps {summary['env_steps']:,} ({summary['env_steps_per_run']:,} per run)  "
        f"SPS {summary['sps'] or 0:,.0f}  compile {summary['compile_s']:.1f} s  "
        f"run {summary['run_s']:.1f} s  device {summary['device']}"
    )


def print_eval(env: str, updates_done: int, rows: list[dict[str, Any]]) -> None:
    """One table row per run: mean +/- std return, deterministic (mode) and sampled."""
    from rich.console import Console
    from rich.table import Table

    def fmt(stats: dict[str, Any]) -> str:
        if not np.isfinite(stats["return_mean"]):
            return "n/a"
        return f"{stats['return_mean']:.1f} ± {stats['return_std']:.1f}"

    table = Table(title=f"{env}: evaluation after {updates_done} updates")
    for column in ("run", "seed", "setting", "deterministic", "stochastic", "finished"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    for row in rows:
        setting = ", ".join(f"{k}={v:g}" for k, v in row["setting"].items()) or "-"
        det, sto = row["deterministic"], row["stochastic"]
        finished = f"{det['episodes_finished']}/{det['episodes']}"
        table.add_row(str(row["run"]), str(row["seed"]), setting, fmt(det), fmt(sto), finished)
    Console().print(table)
