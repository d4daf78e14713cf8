"""Population benchmark: a fixed setting, a random search and the search with PBT, at equal
env steps.

    python benchmarks/populations.py                        # cartpole, acrobot, pendulum; 16 runs
    python benchmarks/populations.py --presets cartpole --runs 1024 --out /tmp/pop   # a GPU

For each preset, three populations of `--runs` runs, each one compiled program trained in
chunks by the session `purejaxppo train` uses:

- fixed: the preset's hyperparameters over `--runs` seeds;
- search: the learning rate drawn log-uniform over [1e-5, 3e-2] per run (the range the PBT
  learning test uses: it spans rates that barely learn and rates that diverge);
- pbt: the same draws, with an exploit-and-explore step every tenth of the run (the bottom
  quarter copies the top quarter; factors 0.8 / 1.25).

Writes to `benchmarks/results/<device>/populations/`: `populations.json` (per preset and
population: final return mean/std over runs, the best run and its learning rate, wall and
compile seconds), `populations.md` (the table) and `<preset>.png` (mean return +/- std over
runs against env steps, one line per population).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.metrics import final_returns, return_stats
from purejaxppo.outputs import plots
from purejaxppo.outputs.machine import device_description, library_versions, results_dir
from purejaxppo.outputs.populations import best_run
from purejaxppo.outputs.summary import write_json
from purejaxppo.presets import PRESETS, preset_names
from purejaxppo.runs.pbt_settings import PBTConfig
from purejaxppo.runs.search import SearchRange
from purejaxppo.runs.spec import LoopOptions, RunSpec
from purejaxppo.session import TrainSession

PRESET_NAMES = ("cartpole", "acrobot", "pendulum")
SEARCH = {"learning_rate": SearchRange("log", 1e-5, 3e-2)}
POPULATIONS = ("fixed", "search", "pbt")
PBT_STEPS = 10


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESET_NAMES), help="comma list")
    parser.add_argument("--runs", type=int, default=16, help="runs per population (default 16)")
    parser.add_argument("--total-timesteps", type=int, help="override the presets' env steps")
    parser.add_argument("--out", type=Path, help="default: results/<device>/populations")
    args = parser.parse_args(argv)
    try:
        args.presets = preset_names(args.presets)
    except ConfigError as error:
        parser.error(str(error))
    if args.runs < 4:
        parser.error("--runs must be at least 4 (PBT replaces a quarter of them)")
    return args


def population_spec(kind: str, name: str, runs: int, total_timesteps: int | None) -> RunSpec:
    """The `kind` population of preset `name`."""
    config, hp = PRESETS[name]
    if total_timesteps is not None:
        config = config.replace(total_timesteps=total_timesteps)
    spec = RunSpec(f"{name}-{kind}", config, hp, seed=0, num_seeds=runs)
    if kind == "fixed":
        return spec
    every = max(1, config.num_updates // PBT_STEPS)
    pbt = PBTConfig(every=every) if kind == "pbt" else PBTConfig()
    return RunSpec(spec.name, config, hp, seed=0, num_seeds=runs, search=SEARCH, strategy=pbt)


def pbt_replaced(spec: RunSpec) -> int:
    """Runs replaced at each PBT step (0: no PBT)."""
    strategy = spec.strategy
    return strategy.replaced(spec.num_runs) if isinstance(strategy, PBTConfig) else 0


def train_population(spec: RunSpec) -> dict[str, Any]:
    """Train `spec` without output files; its figures and curves."""
    start = time.perf_counter()
    session = TrainSession.open(spec, LoopOptions(progress=False, checkpoint_every=0))
    run = session.run()
    wall_s = time.perf_counter() - start
    finals = final_returns(run.metrics)
    best = best_run(session.population, run.metrics, run.log, tuple(spec.search))
    return {
        "final_return": return_stats(finals),
        "best": best,
        "wall_s": wall_s,
        "compile_s": run.timing.compile_s,
        "run_s": run.timing.run_s,
        "env_steps_per_run": int(session.trainer.env_steps(run.updates_done)),
        "pbt_every": getattr(spec.strategy, "every", 0),
        "replaced_per_step": pbt_replaced(spec),
        "curves": np.asarray(run.metrics.episode_return, np.float64),
        "steps": session.trainer.env_steps(range(1, run.updates_done + 1)),
    }


def plot_populations(path: Path, name: str, rows: dict[str, dict[str, Any]]) -> None:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for kind, row in rows.items():
        mean, low, high = plots.curve_band(row["curves"], "std")
        (line,) = ax.plot(row["steps"], mean, lw=1.5, label=f"{kind} (mean ± std)")
        ax.fill_between(row["steps"], low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("environment steps per run")
    ax.set_ylabel("episode return")
    ax.set_title(f"{name}: fixed setting, random search, search + PBT")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plots.save_figure(fig, path)


def fmt(stats: dict[str, Any]) -> str:
    return "n/a" if stats["mean"] is None else f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def markdown_table(results: list[dict[str, Any]], device: str, command: str) -> str:
    lines = [
        f"Device `{device}`. Final return: mean ± std over runs of each run's mean training "
        "return over the last 10% of updates. Best: the run with the highest final return, "
        "its learning rate at the end (PBT: after its lineage's last step).",
        "",
        "| preset | population | runs | steps/run | final return | best run (lr) "
        "| wall s (compile s) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for result in results:
        for kind in POPULATIONS:
            row = result[kind]
            best = row["best"]
            lr = best["hyperparams"].get("learning_rate") if best else None
            best_text = "n/a" if best is None else f"{best['final_return']:.1f}"
            best_text += "" if lr is None else f" ({lr:.2e})"
            lines.append(
                f"| {result['preset']} | {kind} | {result['runs']} | {row['env_steps_per_run']:,} "
                f"| {fmt(row['final_return'])} | {best_text} | {row['wall_s']:.0f} "
                f"({row['compile_s']:.0f}) |"
            )
    lines += ["", "Command:", "", f"    {command}", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    out = results_dir(args.out, Path(__file__).parent / "results", "populations")
    device = device_description()
    command = " ".join(["python benchmarks/populations.py", *(argv or sys.argv[1:])])
    results = []
    for name in args.presets:
        rows = {}
        for kind in POPULATIONS:
            print(f"{name}: {kind}, {args.runs} runs ...", flush=True)
            rows[kind] = train_population(
                population_spec(kind, name, args.runs, args.total_timesteps)
            )
            print(f"  final {fmt(rows[kind]['final_return'])}  wall {rows[kind]['wall_s']:.0f} s")
        plot_populations(out / f"{name}.png", name, rows)
        kept = {
            k: {f: v for f, v in row.items() if f not in ("curves", "steps")}
            for k, row in rows.items()
        }
        results.append({"preset": name, "runs": args.runs, **kept})
        document = {"device": device, "versions": library_versions(), "command": command}
        write_json(out / "populations.json", document | {"presets": results})
        (out / "populations.md").write_text(markdown_table(results, device, command))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
