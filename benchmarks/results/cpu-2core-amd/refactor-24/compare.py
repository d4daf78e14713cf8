"""Before/after table of issue 24's speed check (population strategies, one acting API): per
grid point, the median over processes and the process range of the fraction of the floor,
SPS and compile time; a point counts as slower only if its after-median lies below the
before-range by more than that range's width.

    python benchmarks/results/cpu-2core-amd/refactor-24/compare.py DIR > DIR/results.md

DIR holds `before/bench.json` and `after/bench.json` (`back-to-back`: the two grids one after
the other, 3 processes each; `interleaved`: single-process grids, before and after taking
turns, 3 each).
"""

import json
import statistics
import sys
from pathlib import Path

HERE = Path(sys.argv[1])
FIGURES = (
    ("fraction_of_floor", 100, "{:.1f}%", True),
    ("sps", 1, "{:,.0f}", True),
    ("compile_s", 1, "{:.2f} s", False),
)


def per_point(name):
    rows = json.loads((HERE / name / "bench.json").read_text())
    return {(r["num_seeds"], r["num_envs"]): r for r in rows}


def figure(row, key):
    values = [p[key] for p in row["processes"]]
    return statistics.median(values), min(values), max(values)


def shown(values, scale, fmt):
    median, low, high = (fmt.format(v * scale) for v in values)
    return f"{median} ({low}-{high})"


def is_slower(before, after, higher_is_better):
    width = before[2] - before[1]
    if higher_is_better:
        return before[1] - after[0] > width
    return after[0] - before[2] > width


def main():
    before, after = per_point("before"), per_point("after")
    print("| runs x envs | figure | before median (range) | after median (range) | slower? |")
    print("| --- | --- | ---: | ---: | --- |")
    for point in before:
        for key, scale, fmt, higher_is_better in FIGURES:
            b, a = figure(before[point], key), figure(after[point], key)
            slower = "yes" if is_slower(b, a, higher_is_better) else "no"
            cells = f"{shown(b, scale, fmt)} | {shown(a, scale, fmt)} | {slower}"
            print(f"| {point[0]} x {point[1]} | {key} | {cells} |")


if __name__ == "__main__":
    main()
