"""Long runs from the command line: SIGINT saves and exits, --resume continues to the same
outputs as an uninterrupted run, eval reads the checkpoint, TensorBoard has one tag set per run."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fast_compile import fast_cpu_env, trainers_compiled_fast
from suite_helpers import stop_after
from tracker_files import tensorboard_scalars

from purejaxppo.cli.main import main

# 2 runs x 4 envs x 8 steps, 1 epoch: a few ms per update.
TINY = [
    "--env",
    "CartPole-v1",
    "--num-envs",
    "4",
    "--set",
    "num_steps=8",
    "--set",
    "update_epochs=1",
    "--set",
    "num_minibatches=2",
    "--num-seeds",
    "2",
    "--no-progress",
]


# The tests marked with it compile fast; not the SIGINT test, whose rows from a subprocess
# compiled as the command line compiles must equal this process's byte for byte.
@pytest.fixture
def compiled_fast():
    """The trainers this test makes compile fast (`fast_compile.trainers_compiled_fast`)."""
    with trainers_compiled_fast():
        yield


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def sorted_rows(path: Path) -> list[dict[str, str]]:
    """metrics.csv rows ordered by (run, update), whatever order the chunks wrote them in."""
    return sorted(read_rows(path), key=lambda row: (int(row["run"]), int(row["update"])))


def assert_metrics_close(a: Path, b: Path, num_rows: int, names: tuple[str, ...]) -> None:
    """Two metrics.csv files: the same (run, update) rows, and `names` equal to rounding."""
    rows_a, rows_b = sorted_rows(a), sorted_rows(b)
    keys = [[(r["run"], r["update"]) for r in rows] for rows in (rows_a, rows_b)]
    assert keys[0] == keys[1] and len(rows_a) == num_rows
    for name in names:
        np.testing.assert_allclose(
            [float(r[name]) for r in rows_a], [float(r[name]) for r in rows_b], rtol=1e-4, atol=1e-6
        )


def test_sigint_saves_then_resume_matches_uninterrupted(tmp_path, capsys):
    steps = 4 * 8 * 600  # 600 updates, one per chunk: long enough to interrupt
    args = [*TINY, "--total-timesteps", str(steps), "--chunk-updates", "1"]
    args += ["--eval-every", "20", "--eval-episodes", "1"]  # kept, and continued, by --resume
    stopped = tmp_path / "stopped"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "purejaxppo", "train", *args, "--checkpoint-every", "20"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(stopped)], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 240
    while not (stopped / "checkpoints" / "20").exists():  # the first periodic checkpoint
        assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"purejaxppo train --resume {stopped}" in err
    summary = json.loads((stopped / "summary.json").read_text())
    done = summary["updates_done"]
    assert 20 <= done < 600 and not summary["complete"]
    assert len(read_rows(stopped / "metrics.csv")) == 2 * done

    capsys.readouterr()
    only_at_end = ["--checkpoint-every", "0"]
    assert main(["train", "--resume", str(stopped), "--no-progress", *only_at_end]) == 0
    assert f"resuming after update {done}" in capsys.readouterr().out
    whole = tmp_path / "whole"
    assert main(["train", *args, *only_at_end, "--out", str(whole)]) == 0
    resumed_rows = sorted_rows(stopped / "metrics.csv")
    assert len(resumed_rows) == 2 * 600
    assert resumed_rows == sorted_rows(whole / "metrics.csv")  # bit for bit, as text
    assert (stopped / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    evaluated = sorted({int(r["update"]) for r in resumed_rows if r["eval_return"]})
    assert evaluated == list(range(20, 601, 20))  # before the stop and after it
    resumed = json.loads((stopped / "summary.json").read_text())
    assert (
        resumed["complete"]
        and resumed["final_return"]
        == (json.loads((whole / "summary.json").read_text())["final_return"])
    )


@pytest.mark.usefixtures("compiled_fast")
def test_stop_before_the_first_chunk_ends_saves_no_checkpoint(tmp_path, monkeypatch, capsys):
    stop_after(monkeypatch, 0)
    out = tmp_path / "run"
    # 6 updates in chunks of 2: the programs of tests/cli/test_nothing_lost.py's runs.
    args = [*TINY, "--total-timesteps", str(4 * 8 * 6), "--chunk-updates", "2"]
    assert main(["train", *args, "--out", str(out)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped after 0 of 6 updates; no checkpoint was saved" in err
    assert json.loads((out / "summary.json").read_text())["updates_done"] == 0
    assert read_rows(out / "metrics.csv") == []
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())


def test_resume_refuses_other_settings_and_missing_runs(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--env", "Acrobot-v1"]) == 2
    assert "--resume continues a run with its saved settings; drop --env" in (
        capsys.readouterr().err
    )
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint under" in err and err.count("\n") == 1
    assert main(["eval", str(tmp_path)]) == 2
    assert "no checkpoint under" in capsys.readouterr().err


# On the tests of `small_run`: one xdist worker trains it once.
shares_small_run = pytest.mark.xdist_group("small_run")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """12 updates in chunks of 2, an evaluation every 4th chunk (after update 8 only)."""
    out = tmp_path_factory.mktemp("small") / "run"
    # The programs of tests/outputs/test_trackers.py's run: compiled once with the suite's cache.
    args = [*TINY, "--total-timesteps", str(4 * 8 * 12), "--chunk-updates", "2"]
    evaluation = ["--eval-every", "4", "--eval-episodes", "3"]
    with trainers_compiled_fast():
        assert main(["train", *args, *evaluation, "--out", str(out), "--tensorboard"]) == 0
    return out


@shares_small_run
def test_existing_run_needs_resume(small_run, capsys):
    assert main(["train", *TINY, "--out", str(small_run)]) == 2
    assert "already holds a checkpointed run: --resume" in capsys.readouterr().err


@shares_small_run
def test_periodic_evaluation_is_in_metrics(small_run):
    rows = read_rows(small_run / "metrics.csv")
    evaluated = [r for r in rows if r["eval_return"]]
    assert sorted({int(r["update"]) for r in evaluated}) == [8]  # the 4th of 6 chunks
    assert len(evaluated) == 2 and all(float(r["eval_return"]) >= 8 for r in evaluated)


@shares_small_run
def test_resume_of_a_finished_run_changes_nothing(small_run, capsys):
    files = ("metrics.csv", "summary.json", "config.json")
    before = {name: (small_run / name).read_bytes() for name in files}
    assert main(["train", "--resume", str(small_run), "--no-progress"]) == 0
    assert "all 12 updates are done, nothing to train" in capsys.readouterr().out
    assert {name: (small_run / name).read_bytes() for name in files} == before


@shares_small_run
@pytest.mark.usefixtures("compiled_fast")
def test_eval_command_reads_the_checkpoint(small_run, tmp_path, capsys):
    # --out may name a directory: eval.json is written into it.
    assert main(["eval", str(small_run), "--episodes", "4", "--out", str(tmp_path)]) == 0
    assert "deterministic" in capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["updates_done"] == 12 and result["episodes"] == 4
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    for run in result["runs"]:
        for mode in ("deterministic", "stochastic"):
            assert run[mode]["episodes"] == 4
            assert 8 <= run[mode]["return_mean"] <= 500  # CartPole's range
    assert main(["eval", str(small_run), "--episodes", "0"]) == 2


@shares_small_run
def test_tensorboard_has_one_tag_set_per_run(small_run):
    runs = sorted(p.name for p in (small_run / "tensorboard").iterdir())
    assert runs == ["run-0000-seed-0", "run-0001-seed-1"]
    rows = read_rows(small_run / "metrics.csv")
    for index, name in enumerate(runs):
        scalars = tensorboard_scalars(small_run / "tensorboard" / name)
        assert len(scalars["train/total_loss"]) == 12
        expected = [float(r["total_loss"]) for r in rows if r["run"] == str(index)]
        np.testing.assert_allclose(scalars["train/total_loss"], expected, rtol=1e-5)
        assert len(scalars["eval/return"]) == 1


# 3 runs of 6 updates in chunks of 2: the runs of the sharded and the 2-process tests.
THREE_RUNS = [*TINY, "--num-seeds", "3", "--total-timesteps", str(4 * 8 * 6)]
THREE_RUNS += ["--chunk-updates", "2"]


# On the tests of `one_device_run`: one xdist worker trains it once.
shares_one_device_run = pytest.mark.xdist_group("one_device_run")


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    """`THREE_RUNS` in this 1-device process: what the sharded and the 2-process runs must
    equal (trained once for both tests)."""
    out = tmp_path_factory.mktemp("one_device") / "single"
    with trainers_compiled_fast():
        assert main(["train", *THREE_RUNS, "--out", str(out)]) == 0
    return out


@shares_one_device_run
@pytest.mark.usefixtures("compiled_fast")
def test_sharded_run_checkpoints_unpadded_and_resumes_on_one_device(tmp_path, capsys, request):
    """3 runs on 4 forced devices (padded to 4), checkpointed every chunk; the newest
    checkpoint removed, the run resumes in this 1-device process and ends where a 1-device
    run ends (float32 rounding apart); eval reads the sharded run's checkpoint."""
    args = [*THREE_RUNS, "--checkpoint-every", "1"]
    sharded = tmp_path / "sharded"
    env = fast_cpu_env(dict(os.environ), devices=4)  # compared with a tolerance: rounding aside
    proc = subprocess.Popen(
        [sys.executable, "-m", "purejaxppo", "train", *args, "--out", str(sharded)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        single = request.getfixturevalue("one_device_run")  # trained while the process runs
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "over 4 devices" in stdout
    assert sorted(p.name for p in (sharded / "checkpoints").iterdir()) == ["4", "6"]
    for path in sorted((sharded / "checkpoints" / "6").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (sharded / "checkpoints" / "6").rmdir()

    capsys.readouterr()
    assert main(["train", "--resume", str(sharded), "--no-progress"]) == 0
    assert "resuming after update 4" in capsys.readouterr().out
    names = ("total_loss", "grad_norm", "entropy")
    assert_metrics_close(sharded / "metrics.csv", single / "metrics.csv", 3 * 6, names)
    assert main(["eval", str(sharded), "--episodes", "2"]) == 0
    assert len(json.loads((sharded / "eval.json").read_text())["runs"]) == 3


@shares_one_device_run
@pytest.mark.usefixtures("compiled_fast")
def test_two_processes_from_the_command_line(tmp_path, capsys, request):
    """`train` in 2 processes x 2 CPU devices (gloo on 127.0.0.1): both exit 0, process 0
    writes the outputs, and they match a 1-device run of the same 3 runs."""
    args = THREE_RUNS
    out = tmp_path / "two"
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = fast_cpu_env(dict(os.environ), devices=2)  # compared with a tolerance: rounding aside
    hosts = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--out", str(out)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "purejaxppo", "train", *args, *hosts, "--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        single = request.getfixturevalue("one_device_run")  # trained while they run
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert "over 4 devices (2 process(es))" in results[0][0]
    assert "training" not in results[1][0]  # process 1 prints and writes nothing
    names = ("total_loss", "grad_norm")
    assert_metrics_close(out / "metrics.csv", single / "metrics.csv", 3 * 6, names)
    assert main(["eval", str(out), "--episodes", "2"]) == 0  # its checkpoint, on 1 device


# Runs `main` on its arguments and prints the persistent cache's hits and writes.
CACHE_COUNTER = """
import sys
import jax
from purejaxppo.cli.main import main
counts = {"/jax/compilation_cache/cache_hits": 0, "/jax/compilation_cache/cache_misses": 0}
def count(event, **kwargs):
    if event in counts:
        counts[event] += 1
jax.monitoring.register_event_listener(count)
code = main(sys.argv[1:])
print("cache", code, *counts.values())
"""


def test_compilation_cache_is_written_then_read_by_a_new_process(tmp_path):
    """`--compilation-cache DIR`: the first process writes every program it compiles to DIR,
    a second process of the same config reads them all back and compiles none."""
    cache = tmp_path / "xla"
    args = [*TINY, "--total-timesteps", str(2 * 4 * 8 * 2), "--compilation-cache", str(cache)]

    def run(out: str) -> tuple[int, int]:
        command = [sys.executable, "-c", CACHE_COUNTER, "train", *args]
        command += ["--out", str(tmp_path / out)]
        env = fast_cpu_env(dict(os.environ))  # the cache's counts, not its programs, matter
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        code, hits, writes = done.stdout.split("cache ")[-1].split()
        assert code == "0"
        return int(hits), int(writes)

    first_hits, first_writes = run("first")
    assert first_writes >= 2  # at least the init and the chunk programs
    assert len(list(cache.iterdir())) >= first_writes
    second_hits, second_writes = run("second")
    assert (second_hits, second_writes) == (first_hits + first_writes, 0)
