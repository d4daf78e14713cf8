"""The terminal: a rich progress bar for the chunked loop, and the tables of a run's summary,
its evaluation and a benchmark grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from purejaxppo.metrics import recent_mean_return
from purejaxppo.runs.chunked import ChunkDone


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
    best = summary.get("best")
    if best and summary["num_runs"] > 1:
        values = ", ".join(
            f"{k}={v:.3g}" for k, v in {**best["setting"], **best["hyperparams"]}.items()
        )
        console.print(
            f"best: run {best['run']} (seed {best['seed']}) final return "
            f"{best['final_return']:.1f}" + (f", {values}" if values else "")
        )
    flagged = [flag for flags in summary.get("health", []) for flag in flags]
    if flagged:
        counts = ", ".join(f"{flag} {flagged.count(flag)}" for flag in sorted(set(flagged)))
        console.print(f"health: runs flagged: {counts} (summary.json: health)")


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


def print_rows(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rows[0]['env']}: PPO against the env-only floor")
    columns = ("envs", "runs", "compile s", "run s", "SPS", "env-only SPS", "% floor", "peak MiB")
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["num_envs"]),
            str(r["num_seeds"]),
            f"{r['compile_s']:.2f}",
            f"{r['run_s']:.3f}",
            f"{r['sps']:,.0f}",
            f"{r['env_only_sps']:,.0f}",
            f"{100 * r['fraction_of_floor']:.1f}",
            f"{r['peak_bytes'] / 2**20:,.0f}",
        )
    Console().print(table)
