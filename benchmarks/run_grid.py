"""The standard throughput grid: cartpole preset, PPO against the env-only floor.

    python benchmarks/run_grid.py            # writes benchmarks/results/<device>/

Points: 1 run x {4, 64, 512, 2048} envs and 16 runs x {4, 64} envs, 128 steps, 4 epochs x
4 minibatches (the cartpole preset), 131,072 env steps per run (at least 4 updates), the
median of 5 calls alternated with the floor's.

The grid runs in `--processes` separate Python processes (default 3), one after another:
on this project's shared CPU machines the same compiled program runs up to 2x faster or
slower from one process to the next (the env-only floor at 1 x 4: 0.37 or 0.77 ms per
update), while calls within a process agree to a few percent. Each row of bench.json holds
the median over processes of every figure (the fraction of the floor is the median of the
per-process fractions, each measured in one process) and the per-process rows beside it.
Writes bench.json, the two plots and results.md (the table the README quotes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from purejaxppo.outputs import console, plots
from purejaxppo.outputs.machine import device_description, library_versions, results_dir
from purejaxppo.outputs.summary import write_json
from purejaxppo.presets import PRESETS
from purejaxppo.runs import bench

GRID = [((4, 64, 512, 2048), (1,)), ((4, 64), (16,))]
MEDIAN_FIELDS = ("compile_s", "run_s", "sps", "env_only_run_s", "env_only_sps", "peak_bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<device>")
    parser.add_argument("--total-timesteps", type=int, default=131_072)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args()
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    out = results_dir(args.out, Path(__file__).parent / "results")
    if args.processes == 1:
        rows = run_points(args.total_timesteps, args.repeats)
    else:
        per_process = [
            grid_in_subprocess(args.total_timesteps, args.repeats, i) for i in range(args.processes)
        ]
        rows = median_rows(per_process)
    write_json(out / "bench.json", rows)
    plots.plot_grid(rows, out)
    device, versions = rows[0]["device"], rows[0]["versions"]
    (out / "results.md").write_text(markdown_table(rows, device, versions, args.processes))
    console.print_rows(rows)
    print(f"wrote {out}")


def run_points(total_timesteps: int, repeats: int) -> list[dict]:
    """Every point of the grid in this process."""
    config, hp = PRESETS["cartpole"]
    config = config.replace(total_timesteps=total_timesteps)
    device, versions = device_description(), library_versions()
    rows = []
    for num_envs, num_seeds in GRID:
        options = bench.BenchOptions(repeats=repeats)
        rows += bench.run_grid(config, hp, num_envs, num_seeds, options, on_row=print_row)
    for row in rows:
        row.update(device=device, versions=versions, hyperparams=hp.to_dict(), name="cartpole")
    return rows


def grid_in_subprocess(total_timesteps: int, repeats: int, index: int) -> list[dict]:
    """The whole grid in a fresh Python process; its rows."""
    print(f"process {index + 1}:", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--processes", "1", "--out", tmp]
        command += ["--total-timesteps", str(total_timesteps), "--repeats", str(repeats)]
        subprocess.run(command, check=True)
        return json.loads((Path(tmp) / "bench.json").read_text())


def median_rows(per_process: list[list[dict]]) -> list[dict]:
    """One row per grid point: the first process's row with every timing replaced by its
    median over the processes, the per-process figures kept under `processes`."""
    rows = []
    for point in zip(*per_process, strict=True):
        row = dict(point[0])
        for field in MEDIAN_FIELDS:
            row[field] = statistics.median(r[field] for r in point)
        fractions = [r["fraction_of_floor"] for r in point]
        row["fraction_of_floor"] = statistics.median(fractions)
        row["fraction_of_floor_range"] = [min(fractions), max(fractions)]
        kept = (*MEDIAN_FIELDS, "fraction_of_floor", "run_times", "env_only_run_times")
        row["processes"] = [{key: r[key] for key in kept} for r in point]
        for key in ("run_times", "env_only_run_times"):
            row.pop(key, None)
        rows.append(row)
    return rows


def print_row(row: dict) -> None:
    print(
        f"{row['num_envs']:>5} envs x {row['num_seeds']:>2} runs: SPS {row['sps']:>12,.0f}  "
        f"floor {row['env_only_sps']:>12,.0f}  {100 * row['fraction_of_floor']:5.1f}%  "
        f"compile {row['compile_s']:.2f} s",
        flush=True,
    )


def markdown_table(rows: list[dict], device: str, versions: dict, processes: int) -> str:
    where = "one process" if processes == 1 else f"medians over {processes} processes"
    lines = [
        f"Device `{device}`, jax {versions['jax']}; cartpole preset; median of alternated "
        f"calls, {where}.",
        "",
        "| runs x envs | SPS (all runs) | env-only SPS | % of floor | range | compile s "
        "| peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        low, high = r.get("fraction_of_floor_range", [r["fraction_of_floor"]] * 2)
        lines.append(
            f"| {r['num_seeds']} x {r['num_envs']} | {r['sps']:,.0f} | {r['env_only_sps']:,.0f} "
            f"| {100 * r['fraction_of_floor']:.1f} | {100 * low:.1f}-{100 * high:.1f} "
            f"| {r['compile_s']:.2f} | {r['peak_bytes'] / 2**20:,.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
