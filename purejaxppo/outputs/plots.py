"""Plots of a run and of a benchmark grid (matplotlib, Agg backend)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.ppo.types import Metrics
from purejaxppo.runs.population import Population

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


def plot_grid(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """`sps_vs_num_envs.png` (trainer solid, env-only floor dashed, one colour per num_seeds)
    and `fraction_of_floor.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["num_seeds"] for r in rows})
    env = rows[0]["env"]
    paths = [out_dir / "sps_vs_num_envs.png", out_dir / "fraction_of_floor.png"]
    fig_sps, ax_sps = plt.subplots(figsize=(7, 4.2), dpi=120)
    fig_frac, ax_frac = plt.subplots(figsize=(7, 4.2), dpi=120)
    for s in seeds:
        part = sorted((r for r in rows if r["num_seeds"] == s), key=lambda r: r["num_envs"])
        envs = [r["num_envs"] for r in part]
        (line,) = ax_sps.plot(envs, [r["sps"] for r in part], "o-", label=f"PPO, {s} run(s)")
        ax_sps.plot(
            envs,
            [r["env_only_sps"] for r in part],
            "o--",
            color=line.get_color(),
            alpha=0.6,
            label=f"env only, {s} run(s)",
        )
        ax_frac.plot(envs, [100 * r["fraction_of_floor"] for r in part], "o-", label=f"{s} run(s)")
    for ax, ylabel in ((ax_sps, "env steps per second (all runs)"), (ax_frac, "% of env-only SPS")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("num_envs per run")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax_sps.set_yscale("log")
    ax_sps.set_title(f"{env}: throughput")
    ax_frac.set_title(f"{env}: trainer SPS as a fraction of the env-only floor")
    for fig, path in ((fig_sps, paths[0]), (fig_frac, paths[1])):
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
    return paths


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)


def plot_population(
    path: Path,
    initial: dict[str, np.ndarray],
    log: Any,
    fitness: np.ndarray,
    steps_per_update: int,
) -> None:
    """Each searched hyperparameter (one panel per name, log scale) against env steps, one
    line per run slot through PBT's steps, coloured by the run's final `fitness` `[R]`.
    `initial[name]` `[R]` are the drawn values; `log` the `PBTLog` of the steps."""
    plt = pyplot()
    names = list(initial)
    updates = np.concatenate([[0], np.asarray(log.update)])
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.6 * len(names) + 0.8), dpi=120)
    axes = np.atleast_1d(axes)
    known = np.isfinite(fitness)
    finite = np.where(known, fitness, fitness[known].min() if known.any() else 0.0)
    scale = plt.Normalize(float(finite.min()), float(max(finite.max(), finite.min() + 1e-9)))
    colours = plt.get_cmap("viridis")
    for ax, name in zip(axes, names, strict=True):
        values = np.concatenate(
            [np.asarray(initial[name])[None], np.asarray(getattr(log.hyperparams, name))]
        )
        for run in range(values.shape[1]):
            ax.step(updates * steps_per_update, values[:, run], where="post", lw=0.8,
                    color=colours(scale(finite[run])), alpha=0.8)  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
    axes[-1].set_xlabel("environment steps per run")
    axes[0].set_title("searched hyperparameters through population-based training")
    fig.colorbar(plt.cm.ScalarMappable(norm=scale, cmap=colours), ax=list(axes), label="fitness")
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(path: Path, values: dict[str, np.ndarray], finals: np.ndarray, grid: bool) -> None:
    """Final return `[R]` against each searched or swept hyperparameter `values[name]` `[R]`
    (one panel each, log x where the values span over 10x); with `grid` and two names, a
    heatmap of the mean final return over the grid's cells instead."""
    plt = pyplot()
    names = list(values)
    if grid and len(names) == 2:
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
        rows, cols = (np.unique(values[name]) for name in names)
        cells = np.full((len(rows), len(cols)), np.nan)
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                chosen = (values[names[0]] == row) & (values[names[1]] == col) & np.isfinite(finals)
                cells[i, j] = finals[chosen].mean() if chosen.any() else np.nan
        image = ax.imshow(cells, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols])
        ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows])
        ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
        fig.colorbar(image, ax=ax, label="mean final return")
        save_figure(fig, path)
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), dpi=120)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        x = np.asarray(values[name], np.float64)
        ax.scatter(x, finals, s=14, alpha=0.7)
        if x.min() > 0 and x.max() > 10 * x.min():
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("final return")
        ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
