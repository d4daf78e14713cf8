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
