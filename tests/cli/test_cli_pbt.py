"""The command line's searches and population-based training: bad flags give one line and
exit 2; a small PBT run writes pbt.csv, the plots and the best run; its config.json reruns
it exactly."""

import csv
import json

import pytest

from purejaxppo.cli.main import main

SMALL = ["--preset", "cartpole", "--total-timesteps", str(512 * 8), "--no-progress"]
SEARCH = ["--search", "learning_rate=log:1e-4:1e-2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--search", "learning_rate=log:0:1"],
            "--search learning_rate=log:0:1: a log range needs",
        ),
        (["--search", "learning_rate=1e-3"], "expected log:LOW:HIGH or uniform:LOW:HIGH"),
        (["--search", "num_envs=log:1:8"], "cannot search 'num_envs': it is static"),
        (["--search", "nope=log:1:8"], "unknown setting 'nope' in --search"),
        ([*SEARCH, *SEARCH], "--search learning_rate is given twice"),
        (["--search", "gamma=uniform:0.5:2"], "gamma = 2 is out of range"),
        (
            [*SEARCH, "--set", "learning_rate=1e-3"],
            "learning_rate is both set (--set) and searched",
        ),
        (["--pbt-every", "2"], "--pbt-every 2: PBT evolves the searched hyperparameters"),
        ([*SEARCH, "--pbt-every", "-1"], "--pbt-every must be an integer >= 0"),
        ([*SEARCH, "--pbt-every", "2", "--pbt-fraction", "0.9"], "--pbt-fraction must lie in"),
        (
            [*SEARCH, "--pbt-every", "2", "--num-seeds", "2"],
            "--pbt-fraction 0.25 of 2 runs replaces none",
        ),
        ([*SEARCH, "--pbt-every", "2", "--pbt-perturb", "0.8"], "--pbt-perturb takes LOW,HIGH"),
        ([*SEARCH, "--pbt-every", "2", "--pbt-perturb", "0,2"], "--pbt-perturb must be two"),
        ([*SEARCH, "--pbt-every", "2", "--pbt-fitness", "best"], "invalid choice: 'best'"),
        (
            [*SEARCH, "--num-seeds", "4", "--pbt-every", "2", "--pbt-fitness", "eval"],
            "--pbt-fitness eval ranks by the evaluation: turn on --eval-every",
        ),
        (
            [*SEARCH, "--num-seeds", "4", "--pbt-every", "2", "--chunk-updates", "3"],
            "--chunk-updates 3 must be a multiple of pbt every = 2",
        ),
        ([*SEARCH, "--num-seeds", "4", "--pbt-every", "8"], "--pbt-every 8 updates, but the run"),
    ],
)
def test_bad_search_and_pbt_flags_one_line(args, message, capsys, tmp_path):
    code = main(["train", *SMALL, "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("purejaxppo: error: ")
    assert message in err, err
    assert err.count("\n") == 1, err


@pytest.mark.slow
def test_pbt_run_writes_its_log_plots_and_best_and_reruns_from_config(tmp_path, capsys):
    out = tmp_path / "pbt"
    args = [*SMALL, *SEARCH, "--num-seeds", "4", "--pbt-every", "2", "--chunk-updates", "4"]
    assert main(["train", *args, "--out", str(out)]) == 0
    with (out / "pbt.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["update"]) for r in rows] == [2] * 4 + [4] * 4 + [6] * 4  # not at update 8
    assert sum(int(r["replaced"]) for r in rows) == 3  # 1 of 4 runs at each step
    for row in rows:
        assert 1e-4 * (1 - 1e-6) <= float(row["learning_rate"]) <= 1e-2 * (1 + 1e-6)
        if row["replaced"] == "0":
            assert row["parent"] == row["run"]
    for name in ("population.png", "sweep.png", "learning_curve.png"):
        assert (out / name).stat().st_size > 10_000, name
    summary = json.loads((out / "summary.json").read_text())
    best = summary["best"]
    assert best["final_return"] == max(v for v in summary["final_return"]["per_run"] if v)
    assert len(best["lineage"]) == 4 and best["lineage"][-1] == best["run"]
    assert [s["from_update"] for s in best["changes"]] == [0, 2, 4, 6]
    assert best["hyperparams"]["learning_rate"] == best["changes"][-1]["learning_rate"]
    assert len(summary["health"]) == 4 and all(isinstance(h, list) for h in summary["health"])
    config = json.loads((out / "config.json").read_text())
    assert config["search"] == {"learning_rate": {"kind": "log", "low": 1e-4, "high": 1e-2}}
    assert config["pbt"]["every"] == 2

    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    rerun = json.loads((again / "summary.json").read_text())
    assert rerun["final_return"]["per_run"] == summary["final_return"]["per_run"]
    assert (again / "pbt.csv").read_text() == (out / "pbt.csv").read_text()

    # The best run's schedule, replayed from scratch as one run with fixed changes.
    replay = tmp_path / "replay"
    assert main(["train", "--replay-best", str(out), "--out", str(replay), "--no-progress"]) == 0
    document = json.loads((replay / "config.json").read_text())
    assert document["num_seeds"] == 1 and document["seed"] == best["seed"]
    assert document["search"] == {} and "pbt" not in document  # independent runs
    schedule = best["changes"]
    assert [entry[0] for entry in document["changes"]] == [2, 4, 6]
    assert document["hyperparams"]["learning_rate"] == pytest.approx(schedule[0]["learning_rate"])
    with (replay / "metrics.csv").open() as f:
        used = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    # Update u (1-based) anneals linearly from the value in force: factor 1 - (u - 1) / 8.
    for update in range(1, 9):
        value = [e["learning_rate"] for e in schedule if e["from_update"] < update][-1]
        assert used[update - 1] == pytest.approx(value * (1 - (update - 1) / 8), rel=1e-5)


def test_replay_best_of_a_run_without_pbt_is_refused(tmp_path, capsys):
    run = tmp_path / "plain"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"total_timesteps": 4096}}))
    (run / "summary.json").write_text(json.dumps({"best": {"run": 0}}))
    assert main(["train", "--replay-best", str(run), "--out", str(tmp_path / "r")]) == 2
    assert "not a finished PBT run" in capsys.readouterr().err
