"""`purejaxppo bench`: the floor really steps the envs; the grid writes JSON, plots and table."""

import json

import jax
import pytest
from suite_helpers import jit_fast

import purejaxppo.runs.bench
from purejaxppo import Hyperparams, PPOConfig, make_env
from purejaxppo.cli.main import main
from purejaxppo.outputs.plots import plot_grid
from purejaxppo.runs.bench import make_env_only, time_alternating


def test_env_only_floor_takes_every_step():
    # CartPole pays reward 1 per step, so the reward sum counts the steps taken.
    config = PPOConfig(num_envs=3, num_steps=8, total_timesteps=3 * 8 * 5)
    floor = jit_fast(jax.vmap(make_env_only(make_env("CartPole-v1"), config)))
    totals = floor(jax.random.split(jax.random.key(0), 2))
    assert totals.tolist() == [3 * 8 * 5] * 2


@pytest.mark.slow
def test_bench_grid_writes_rows_and_plots(tmp_path, capsys):
    code = main(
        [
            "bench",
            "--num-envs",
            "2,4",
            "--num-seeds",
            "1",
            "--total-timesteps",
            "256",
            "--set",
            "num_steps=16",
            "--repeats",
            "2",
            "--min-updates",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["num_envs"], r["num_seeds"]) for r in rows] == [(2, 1), (4, 1)]
    for r in rows:
        updates = max(256 // (r["num_envs"] * 16), 2)
        assert r["env_steps"] == r["num_seeds"] * updates * r["num_envs"] * 16
        assert r["sps"] == pytest.approx(r["env_steps"] / r["run_s"])
        assert r["fraction_of_floor"] == pytest.approx(r["sps"] / r["env_only_sps"])
        assert 0 < r["fraction_of_floor"] < 1  # a learner cannot beat its own env
        assert r["compile_s"] > 0 and r["peak_bytes"] > 0 and len(r["run_times"]) == 2
        assert r["env"] == "CartPole-v1" and r["versions"]["jax"] and r["device"]
    for name in ("sps_vs_num_envs.png", "fraction_of_floor.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert "env-only SPS" in capsys.readouterr().out


def test_grid_times_every_point_envs_major_and_plots_a_line_per_run_count(tmp_path, monkeypatch):
    """The grid's 2 x 2 points in order, each at its own config and run count (the timing
    itself is the test above's), and the plots of rows with two run counts."""

    def fake_point(trainer, hp, num_seeds, options):
        num_envs = trainer.config.num_envs
        sps = 1000.0 * num_envs * num_seeds
        row = {"env": trainer.config.env, "num_envs": num_envs, "num_seeds": num_seeds}
        return row | {"sps": sps, "env_only_sps": 10 * sps, "fraction_of_floor": 0.1}

    monkeypatch.setattr(purejaxppo.runs.bench, "bench_point", fake_point)
    config = PPOConfig(num_steps=16, total_timesteps=256)
    seen = []
    options = purejaxppo.runs.bench.BenchOptions(repeats=1)
    rows = purejaxppo.runs.bench.run_grid(
        config, Hyperparams(), [2, 4], [1, 2], options, on_row=seen.append
    )
    assert [(r["num_envs"], r["num_seeds"]) for r in rows] == [(2, 1), (2, 2), (4, 1), (4, 2)]
    assert seen == rows
    plot_grid(rows, tmp_path)
    for name in ("sps_vs_num_envs.png", "fraction_of_floor.png"):
        assert (tmp_path / name).stat().st_size > 10_000


@pytest.mark.slow
def test_bench_times_the_chunked_loop(tmp_path, capsys):
    args = ["--num-envs", "4", "--num-seeds", "2", "--total-timesteps", "320"]
    args += ["--set", "num_steps=16", "--repeats", "2", "--chunk-updates", "2"]
    assert main(["bench", *args, "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "bench.json").read_text())
    assert row["num_updates"] == 5 and row["chunk_updates"] == 2 and row["num_chunks"] == 3
    assert len(row["chunked_run_times"]) == 2
    assert row["chunked_sps"] == pytest.approx(row["env_steps"] / row["chunked_run_s"])
    assert row["chunk_overhead"] == pytest.approx(row["chunked_run_s"] / row["run_s"] - 1)
    assert "chunked (3 chunks)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-updates", "0"], "--chunk-updates must be at least 1"),
        (["--num-envs", "4,x"], "--num-envs takes a comma list of integers"),
        (["--num-seeds", "0"], "--num-seeds takes positive integers"),
        (["--num-envs", "3", "--set", "num_steps=5"], "is not divisible by num_minibatches"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--env", "Nope-v0"], "unknown environment 'Nope-v0'"),
        (
            ["--num-envs", "4", "--total-timesteps", "2048", "--chunk-updates", "100"],
            "--chunk-updates 100 is more than the 4 updates of the 4-env point",
        ),
        # The base config is checked at the grid's first point (3 x 128 divides by 3), and
        # a total below one update is raised to --min-updates (4) at each point.
        (
            [
                "--num-envs",
                "3,6",
                "--set",
                "num_minibatches=3",
                "--total-timesteps",
                "2048",
                "--chunk-updates",
                "99",
            ],
            "--chunk-updates 99 is more than the 5 updates of the 3-env point",
        ),
        (["--num-envs", "64", "--total-timesteps", "100", "--chunk-updates", "5"], "4 updates of"),
        (["--set", "num_envs=8"], "bench takes num_envs from --num-envs (a comma list)"),
    ],
)
def test_bench_bad_input(args, message, capsys, monkeypatch):
    def no_bench(*args, **kwargs):
        raise AssertionError("a grid point was compiled before the input was checked")

    monkeypatch.setattr(purejaxppo.runs.bench, "bench_point", no_bench)
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_time_alternating_traces_one_more_call_apart_from_the_timed_ones(tmp_path):
    calls = [0, 0]

    def program(i):
        def call():
            calls[i] += 1
            return jax.numpy.zeros(())

        return call, ()

    times = time_alternating([program(0), program(1)], 3, tmp_path / "trace", trace_index=1)
    assert [len(t) for t in times] == [3, 3]
    assert calls == [1 + 3, 1 + 3 + 1]  # warm-up, timed rounds, and the traced call
    assert list((tmp_path / "trace").rglob("*.xplane.pb"))
