"""Learning benchmark: train presets over several seeds and compare with public references.

    python benchmarks/learning.py                          # CPU presets, 8 seeds each
    python benchmarks/learning.py --presets acrobot,pendulum --seeds 4 --out /tmp/learning

Each preset is one compiled, vmapped program over its seeds, run in chunks by the host loop
that `purejaxppo train` uses. Writes to `benchmarks/results/<device>/learning/`:
`learning.json` (per preset: final return over seeds, a deterministic evaluation, timings,
the reference figure, its source and whether it is met), `learning.md` (the table) and
`<preset>.png` (mean return +/- std over seeds against env steps).

A reference counts as met when the mean final return over seeds is at least the reference
(the worse end of a range) less 5% of its magnitude.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.metrics import final_returns, return_stats
from purejaxppo.outputs import plots
from purejaxppo.outputs.machine import device_description, library_versions, results_dir
from purejaxppo.outputs.summary import write_json
from purejaxppo.ppo.evaluate import summarize_eval
from purejaxppo.presets import PRESETS, preset_names
from purejaxppo.runs.evaluation import evaluate_runs
from purejaxppo.runs.spec import RunSpec
from purejaxppo.session import TrainSession

GYMNAX_BASELINES = "public PPO baselines reported for gymnax environments"
ZOO = (
    "araffin/rl-baselines-zoo: benchmark.md, ppo2 91.7 ± 1.7 (evaluation of the trained "
    "agent); hyperparams/ppo2.yml, 1M training steps"
)
TOLERANCE = 0.05
EVAL_EPISODES = 16


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published final return (`low`..`high` for a range; `low == high` for one figure)
    at `steps` env steps per run, and where it comes from."""

    low: float
    high: float
    steps: int
    source: str

    @property
    def met_at(self) -> float:
        """The return that counts as reaching it: the worse end less 5% of its magnitude."""
        return self.low - TOLERANCE * abs(self.low)

    def describe(self) -> str:
        figure = f"{self.low:g}" if self.low == self.high else f"{self.low:g} to {self.high:g}"
        return f"{figure} at {self.steps / 1e6:g}M"


REFERENCES: dict[str, Reference] = {
    "cartpole": Reference(500, 500, 500_000, GYMNAX_BASELINES),
    "acrobot": Reference(-80, -80, 500_000, GYMNAX_BASELINES),
    "mountaincar": Reference(-118, -118, 250_000, GYMNAX_BASELINES),
    "pendulum": Reference(-170, -130, 1_000_000, GYMNAX_BASELINES),
    "mountaincar-continuous": Reference(91.7, 91.7, 1_000_000, ZOO),
    "breakout-minatar": Reference(28, 28, 10_000_000, GYMNAX_BASELINES),
    "asterix-minatar": Reference(15, 15, 10_000_000, GYMNAX_BASELINES),
    "freeway-minatar": Reference(58, 58, 10_000_000, GYMNAX_BASELINES),
    "spaceinvaders-minatar": Reference(131, 131, 10_000_000, GYMNAX_BASELINES),
}
CPU_PRESETS = ("cartpole", "acrobot", "mountaincar", "pendulum", "mountaincar-continuous")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets",
        default=",".join(CPU_PRESETS),
        help="comma list of presets (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, default=8, help="seeds per preset (default 8)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<device>/learning")
    parser.add_argument(
        "--total-timesteps", type=int, help="override every preset's env steps per run"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=EVAL_EPISODES, help="deterministic episodes per run"
    )
    args = parser.parse_args(argv)
    try:
        args.presets = preset_names(args.presets)
    except ConfigError as error:
        parser.error(str(error))
    if args.seeds < 1:
        parser.error("--seeds must be a positive integer")
    return args


def eval_stats(per_run: np.ndarray) -> dict[str, Any]:
    """Mean and std over runs of each run's mean deterministic return."""
    return return_stats(per_run)


def is_met(value: float | None, reference: Reference | None) -> bool | None:
    if reference is None:
        return None
    return value is not None and value >= reference.met_at


def benchmark_preset(
    name: str, seeds: int, total_timesteps: int | None, eval_episodes: int, out: Path
) -> dict[str, Any]:
    """Train preset `name` over `seeds` seeds (one compiled program), evaluate, plot."""
    config, hp = PRESETS[name]
    if total_timesteps is not None:
        config = config.replace(total_timesteps=total_timesteps)
    start = time.perf_counter()
    session = TrainSession.open(RunSpec(name, config, hp, seed=0, num_seeds=seeds))
    run = session.run()  # no hooks: the figures are read from its metrics below
    trainer, population = session.trainer, session.population
    wall_s = time.perf_counter() - start
    metrics = run.metrics
    finals = final_returns(metrics)
    start = time.perf_counter()
    policy = session.policies(run.state)
    evaluation = summarize_eval(
        evaluate_runs(
            trainer,
            policy,
            jax.random.key(10_000),
            eval_episodes,
            True,
            placement=session.placement,
        )
    )
    eval_s = time.perf_counter() - start
    eval_returns = np.asarray([row["return_mean"] for row in evaluation])
    reference = REFERENCES.get(name)
    final = return_stats(finals)
    deterministic = eval_stats(eval_returns)
    env_steps = trainer.env_steps(range(1, run.updates_done + 1))
    line = None if reference is None else (reference.low, f"reference {reference.describe()}")
    plots.plot_learning_curve(
        out / f"{name}.png",
        population,
        metrics,
        env_steps,
        f"{name} ({config.env}): {seeds} seeds",
        band="std",
        reference=line,
    )
    nonfinite = not np.all(np.isfinite(np.asarray(metrics.total_loss)))
    return {
        "preset": name,
        "env": config.env,
        "env_steps_per_run": int(env_steps[-1]),
        "seeds": seeds,
        "config": config.to_dict(),
        "hyperparams": {k: float(v) for k, v in hp.to_dict().items()},
        "tuning": trainer.tuning.to_dict(),
        "final_return": final,
        "eval_return": {**deterministic, "episodes_per_run": eval_episodes},
        "wall_s": wall_s,
        "compile_s": run.timing.compile_s,
        "run_s": run.timing.run_s,
        "eval_s": eval_s,
        "nonfinite_loss": nonfinite,
        "reference": None
        if reference is None
        else {**dataclasses.asdict(reference), "met_at": reference.met_at},
        "met": is_met(final["mean"], reference),
        "eval_met": is_met(deterministic["mean"], reference),
    }


def reference_of(data: dict[str, Any]) -> Reference:
    return Reference(data["low"], data["high"], data["steps"], data["source"])


def fmt_stats(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "n/a"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def fmt_met(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "no"


def markdown_table(rows: list[dict[str, Any]], device: str) -> str:
    lines = [
        f"Device `{device}`. Final return: mean ± std over seeds of each seed's mean "
        "training-episode return over the last 10% of updates (stochastic policy); "
        f"eval: deterministic policy (mode), {rows[0]['eval_return']['episodes_per_run']} "
        "episodes per seed. Met: mean final return ≥ reference less 5% of its magnitude "
        "(the worse end of a range).",
        "",
        "| preset | env | steps/run | seeds | final return | eval (deterministic) "
        "| reference | met (final / eval) | wall s (compile s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for row in rows:
        ref = row["reference"]
        reference = "-" if ref is None else reference_of(ref).describe()
        lines.append(
            f"| {row['preset']} | {row['env']} | {row['env_steps_per_run']:,} | {row['seeds']} "
            f"| {fmt_stats(row['final_return'])} | {fmt_stats(row['eval_return'])} "
            f"| {reference} | {fmt_met(row['met'])} / {fmt_met(row['eval_met'])} "
            f"| {row['wall_s']:.0f} ({row['compile_s']:.0f}) |"
        )
    sources = sorted({row["reference"]["source"] for row in rows if row["reference"]})
    commands = sorted({row["command"] for row in rows})
    lines += ["", *(f"Reference source: {s}." for s in sources), ""]
    lines += ["Commands:", "", *(f"    {c}" for c in commands), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    out = results_dir(args.out, Path(__file__).parent / "results", "learning")
    device, versions = device_description(), library_versions()
    command = " ".join(["python benchmarks/learning.py", *(argv or sys.argv[1:])])
    rows = earlier_rows(out / "learning.json", device, args.presets)
    for name in args.presets:
        print(f"{name}: training {args.seeds} seeds ...", flush=True)
        row = benchmark_preset(name, args.seeds, args.total_timesteps, args.eval_episodes, out)
        rows = [*(r for r in rows if r["preset"] != name), {**row, "command": command}]
        rows.sort(key=preset_order)
        write_results(out, rows, device, versions)
        print(
            f"{name}: final {fmt_stats(row['final_return'])}  eval {fmt_stats(row['eval_return'])}"
            f"  met {fmt_met(row['met'])}  wall {row['wall_s']:.0f} s "
            f"(compile {row['compile_s']:.0f} s)",
            flush=True,
        )
    print(f"wrote {out}")
    return rows


def preset_order(row: dict[str, Any]) -> int:
    return list(PRESETS).index(row["preset"]) if row["preset"] in PRESETS else len(PRESETS)


def earlier_rows(path: Path, device: str, replaced: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of an earlier `learning.json` on the same device for presets not rerun now, so
    presets can be benchmarked one command at a time into one table."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if data.get("device") != device:
        return []
    return [row for row in data.get("presets", []) if row["preset"] not in replaced]


def write_results(
    out: Path, rows: list[dict[str, Any]], device: str, versions: dict[str, str]
) -> None:
    write_json(out / "learning.json", {"device": device, "versions": versions, "presets": rows})
    (out / "learning.md").write_text(markdown_table(rows, device))


if __name__ == "__main__":
    main()
