"""benchmarks/run_grid.py's aggregation: per point, the median over processes of every
timing and of the per-process fractions of the floor, with their range and the rows kept."""

import os
import subprocess
import sys
from pathlib import Path

from benchmark_scripts import load_benchmark_script


def fake_row(num_envs: int, sps: float, floor: float) -> dict:
    row = {"env": "CartPole-v1", "num_envs": num_envs, "num_seeds": 1, "run_times": [1.0]}
    row |= {"compile_s": sps / 1e5, "run_s": 1 / sps, "sps": sps, "env_only_sps": floor}
    row |= {"env_only_run_s": 1 / floor, "peak_bytes": 100, "env_only_run_times": [1.0]}
    return row | {"fraction_of_floor": sps / floor}


def test_median_rows_take_each_figure_over_processes():
    grid = load_benchmark_script("run_grid")
    processes = [
        [fake_row(4, 100.0, 1000.0), fake_row(64, 10.0, 100.0)],
        [fake_row(4, 300.0, 1000.0), fake_row(64, 30.0, 200.0)],
        [fake_row(4, 200.0, 4000.0), fake_row(64, 20.0, 400.0)],
    ]
    small, large = grid.median_rows(processes)
    assert small["num_envs"] == 4 and large["num_envs"] == 64
    assert small["sps"] == 200.0 and small["env_only_sps"] == 1000.0
    assert small["fraction_of_floor"] == 0.1  # median of 0.1, 0.3, 0.05
    assert small["fraction_of_floor_range"] == [0.05, 0.3]
    assert large["fraction_of_floor"] == 0.1  # median of 0.1, 0.15, 0.05
    assert [p["sps"] for p in small["processes"]] == [100.0, 300.0, 200.0]
    assert "run_times" not in small and "env_only_run_times" not in small
    table = grid.markdown_table([small, large], "cpu", {"jax": "0"}, 3)
    assert "| 1 x 4 | 200 | 1,000 | 10.0 | 5.0-30.0 |" in table
    assert "medians over 3 processes" in table


def test_device_script_refuses_an_unknown_stage_and_logs(tmp_path):
    """benchmarks/run_device.sh (run on a lent GPU) checks its stages and writes its log
    under $OUT; its stages themselves are the CLI's `train` and `bench` and run_grid.py."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run_device.sh"
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(script), "nope"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown stage 'nope' (target, grid)" in (tmp_path / "log.txt").read_text()
    assert (tmp_path / "target").is_dir() and (tmp_path / "grid").is_dir()
