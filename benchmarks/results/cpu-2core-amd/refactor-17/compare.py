"""Before/after table of issue 17's speed check: per grid point, the median over processes and
the process range of the fraction of the floor, SPS and compile time; a point counts as
slower only if its after-median lies below the before-range by more than that range's width.

    python benchmarks/results/cpu-2core-amd/refactor-17/compare.py > .../refactor-17/results.md
"""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent


def per_point(name):
    rows = json.loads((HERE / name / "bench.json").read_text())
    return {(r["num_seeds"], r["num_envs"]): r for r in rows}


def figure(row, key):
    values = [p[key] for p in row["processes"]]
    return statistics.median(values), min(values), max(values)


before, after = per_point("before"), per_point("after")
print("| runs x envs | figure | before median (range) | after median (range) | slower beyond the range? |")
print("| --- | --- | ---: | ---: | --- |")
for point in before:
    for key, scale, fmt, higher_is_better in (
        ("fraction_of_floor", 100, "{:.1f}%", True),
        ("sps", 1, "{:,.0f}", True),
        ("compile_s", 1, "{:.2f} s", False),
    ):
        b, a = figure(before[point], key), figure(after[point], key)
        width = b[2] - b[1]
        worse = (b[1] - a[0] > width) if higher_is_better else (a[0] - b[2] > width)
        show = lambda f: f"{fmt.format(f[0] * scale)} ({fmt.format(f[1] * scale)}-{fmt.format(f[2] * scale)})"
        print(f"| {point[0]} x {point[1]} | {key} | {show(b)} | {show(a)} | {'yes' if worse else 'no'} |")
