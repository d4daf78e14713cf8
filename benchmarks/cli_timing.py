"""How long the command line takes to answer: help, refusals of bad input, and refusals that
need the environment, each in fresh processes of the installed console script.

    python benchmarks/cli_timing.py                        # this checkout, 5 processes a case
    git worktree add /tmp/cli_before HEAD~1
    python benchmarks/cli_timing.py --before-tree /tmp/cli_before   # and that one, alternately

Each case runs `--repeats` times in a fresh process (median and range of the wall times),
in a temporary working directory so that nothing is written into the checkout. With
`--before-tree`, the package of that checkout (on `PYTHONPATH`) runs each case in turn with
this one's, so both see the same load on a shared machine. Writes JSON
(`benchmarks/results/cli_timing.json` by default) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "cli_timing.json"

# (name, arguments, the exit status the case must end with)
CASES: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("help", ("--help",), 0),
    ("train --help", ("train", "--help"), 0),
    ("eval --help", ("eval", "--help"), 0),
    ("malformed flag", ("train", "--num-envs", "four"), 2),
    ("--num-envs 0", ("train", "--num-envs", "0"), 2),
    ("bad minibatch split", ("train", "--set", "num_minibatches=3"), 2),
    ("unknown env", ("train", "--env", "Nope-v0"), 2),
    ("--num-seeds 100000000", ("train", "--num-seeds", "100000000"), 2),
)


def console_command() -> list[str]:
    """The installed `purejaxppo` script next to this Python, else `python -m purejaxppo`."""
    script = Path(sys.executable).with_name("purejaxppo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "purejaxppo"]


def run_once(arguments: Sequence[str], tree: Path | None) -> tuple[float, int, str]:
    """Wall seconds, exit status and last line of output of one fresh process, importing the
    package of `tree` (None: the installed one)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run(
            [*console_command(), *arguments], cwd=cwd, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
    lines = (done.stderr or done.stdout).strip().splitlines()
    return seconds, done.returncode, lines[-1] if lines else ""


def imported_from() -> str:
    """Where the console script's package comes from without `--before-tree`."""
    path = os.environ.get("PYTHONPATH")
    return f"PYTHONPATH={path}, else the installed package" if path else "the installed package"


def summary(arguments: Sequence[str], runs: list[tuple[float, int, str]], expected: int) -> dict:
    """Median and range of the runs' seconds, and the first run's status and message."""
    times = [seconds for seconds, _, _ in runs]
    _, status, line = runs[0]
    if status != expected:
        print(f"warning: {' '.join(arguments)} exited {status}, not {expected}", file=sys.stderr)
    return {
        "arguments": list(arguments),
        "exit_status": status,
        "message": line if expected else "",
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
    }


def measure(repeats: int, trees: dict[str, Path | None]) -> dict[str, Any]:
    """Every case `repeats` times in each tree, the trees taking turns."""
    cases: dict[str, dict[str, Any]] = {label: {} for label in trees}
    for name, arguments, expected in CASES:
        runs: dict[str, list] = {label: [] for label in trees}
        for _ in range(repeats):
            for label, tree in trees.items():
                runs[label].append(run_once(arguments, tree))
        for label in trees:
            cases[label][name] = summary(arguments, runs[label], expected)
        medians = ", ".join(f"{label} {cases[label][name]['median_s']:.2f} s" for label in trees)
        print(f"  {name}: {medians}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]  # other work on a shared machine slows every case
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f} at the end",
        "python": platform.python_version(),
        "repeats": repeats,
        "trees": {label: str(tree or imported_from()) for label, tree in trees.items()},
        "cases": cases,
    }


def markdown_table(result: dict[str, Any]) -> str:
    """One row per case: the command, its median seconds (and range) in each tree."""
    labels = list(result["cases"])
    columns = ["case", "command", *(f"{label}: median s (range)" for label in labels), "exit"]
    lines = ["| " + " | ".join(columns) + " |", "| --- | --- |" + " ---: |" * (len(columns) - 2)]
    for name, last in result["cases"][labels[-1]].items():
        row = [name, f"`purejaxppo {' '.join(last['arguments'])}`"]
        for label in labels:
            case = result["cases"][label][name]
            row.append(f"{case['median_s']:.2f} ({case['min_s']:.2f}-{case['max_s']:.2f})")
        row.append(str(last["exit_status"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="processes per case (median)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument(
        "--before-tree",
        type=Path,
        metavar="DIR",
        help="also time the package of this checkout (e.g. a git worktree of an earlier commit)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.before_tree is not None and not (args.before_tree / "purejaxppo").is_dir():
        parser.error(f"--before-tree {args.before_tree}: no purejaxppo package in it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    trees: dict[str, Path | None] = {"after": None}
    if args.before_tree is not None:
        trees = {"before": args.before_tree.resolve(), "after": None}
    result = measure(args.repeats, trees)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
