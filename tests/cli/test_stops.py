"""How `purejaxppo train` stops on signals, from the outside: a first SIGINT/SIGTERM stops at
the next chunk boundary, saves and exits 128 + the signal (whenever it comes, imports and
compiling included), a second one exits at once with one line, and a signal to one of
several processes stops them all at the same update. No traceback, ever."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fast_compile import fast_cpu_env, trainers_compiled_fast
from test_cli_long_runs import TINY, read_rows

from purejaxppo.cli.main import main

pytestmark = pytest.mark.slow

UPDATE_STEPS = 4 * 8  # TINY's envs x steps: the timesteps of one update
STOP_NOTE = "stopping at the end of this chunk and saving a checkpoint"


class Train:
    """One `python -m purejaxppo train ...` process on the CPU, stdout and stderr to files
    (polled while it runs, read whole at the end)."""

    def __init__(
        self, args: Sequence[str], logs: Path, devices: int = 1, compile_fast: bool = False
    ):
        # Without the suite's shared compilation cache: these tests time signals against
        # compiling, which a cache hit from an earlier test would skip.
        cache_vars = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
        env = {k: v for k, v in os.environ.items() if k not in cache_vars}
        env["JAX_PLATFORMS"] = "cpu"
        if devices > 1:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        if compile_fast:  # for a test whose signals come after compiling
            env = fast_cpu_env(env, devices)
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / "stdout", logs / "stderr"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            command = [sys.executable, "-m", "purejaxppo", "train", *args]
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit status; fails the test (with the end of stderr) after `timeout` s."""
        return wait_all([self], timeout)[0]


@contextlib.contextmanager
def training(*runs: Callable[[], Train]) -> Iterator[list[Train]]:
    """Start the processes; whatever happens in the test, none outlives it."""
    started = []
    try:
        for start in runs:
            started.append(start())
        yield started
    finally:
        for run in started:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(timeout=30)


def wait_all(runs: Sequence[Train], timeout: float) -> list[int]:
    """Every process's exit status; fails the test, with the end of every stderr, unless
    all have exited within `timeout` s."""
    deadline = time.monotonic() + timeout
    for run in runs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    if any(run.proc.poll() is None for run in runs):
        tails = "".join(f"\n--- stderr {i}:\n{r.stderr[-2000:]}" for i, r in enumerate(runs))
        pytest.fail(f"not every process exited within {timeout} s{tails}")
    return [run.proc.returncode for run in runs]


def wait_until(ready: Callable[[], bool], runs: Sequence[Train], timeout: float, what: str):
    """Poll `ready()` until it holds; fail if a process ends first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        for run in runs:
            assert run.proc.poll() is None, (
                f"exited {run.proc.returncode} before {what}:\n" + (run.stderr[-2000:])
            )
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def compiled_fast():
    """The trainers this test makes compile fast (`fast_compile.trainers_compiled_fast`)."""
    with trainers_compiled_fast():
        yield


def saved_updates(out: Path) -> list[int]:
    """The update counts of the checkpoint directories under `out`, in order."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_ctrl_c_during_startup_is_not_swallowed(tmp_path, delay):
    """SIGINT while Python imports jax, or XLA compiles: the run still stops at its first
    chunk boundary, with a summary and the one line, status 130 (jax's garbage-collection
    callback used to swallow the KeyboardInterrupt of the first seconds)."""
    out = tmp_path / "run"
    args = [*TINY, "--total-timesteps", str(UPDATE_STEPS * 2000), "--chunk-updates", "1"]
    with training(lambda: Train([*args, "--out", str(out)], tmp_path / "logs")) as [run]:
        time.sleep(delay)
        assert run.proc.poll() is None, run.stderr[-2000:]
        run.signal(signal.SIGINT)
        assert run.wait(timeout=60) == 130, run.stderr[-2000:]
    err = run.stderr
    assert "Traceback" not in err, err
    assert err.count(f"purejaxppo: SIGINT: {STOP_NOTE}") == 1, err
    assert " of 2000 updates; " in err and "purejaxppo: stopped after " in err, err
    summary = json.loads((out / "summary.json").read_text())
    done = summary["updates_done"]
    assert 0 <= done < 2000 and not summary["complete"]
    assert f"purejaxppo: stopped after {done} of 2000 updates; " in err
    assert len(read_rows(out / "metrics.csv")) == 2 * done
    assert saved_updates(out)[-1:] == ([done] if done else [])  # the stop's own save, if any


def test_a_second_ctrl_c_exits_at_once_with_one_line(tmp_path):
    """Two SIGINTs 0.2 s apart while the chunks compile (the main thread inside XLA): the
    second ends the process at once, 130, saving nothing, in one more line."""
    out = tmp_path / "run"
    args = [*TINY, "--total-timesteps", str(UPDATE_STEPS * 2000), "--chunk-updates", "1"]
    with training(lambda: Train([*args, "--out", str(out)], tmp_path / "logs")) as [run]:
        wait_until(lambda: "training" in run.stdout, [run], 120, "`training` line")
        run.signal(signal.SIGINT)
        time.sleep(0.2)
        run.signal(signal.SIGINT)
        second = time.monotonic()
        assert run.wait(timeout=10) == 130, run.stderr[-2000:]
        assert time.monotonic() - second < 5
    err = run.stderr
    assert "Traceback" not in err, err
    assert err.count(STOP_NOTE) == 1 and err.count("purejaxppo: SIGINT again: exiting now") == 1
    assert "stopped after" not in err, err  # it did not go on to the end of the chunk
    lines = err.splitlines()
    assert len(lines) <= 4, err  # the two lines, each after a blank one
    assert [line for line in lines if line.strip()] == [
        f"purejaxppo: SIGINT: {STOP_NOTE} (Ctrl-C again to exit now, without saving)",
        "purejaxppo: SIGINT again: exiting now",
    ]
    assert saved_updates(out) == []  # compiling, no chunk had run
    assert not (out / "summary.json").exists()


@pytest.mark.usefixtures("compiled_fast")
def test_sigterm_to_one_of_two_processes_stops_both(tmp_path, capsys):
    """2 processes x 2 CPU devices; SIGTERM to process 1 once a checkpoint is on disk: both
    stop at the same chunk boundary and save, both exit 143, process 0 says how to go on;
    then one process resumes from that update and finishes."""
    total = 300
    args = [*TINY, "--total-timesteps", str(UPDATE_STEPS * total), "--chunk-updates", "2"]
    args += ["--checkpoint-every", "1"]
    out = tmp_path / "two"
    hosts = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    hosts += ["--out", str(out)]

    def start(i: int) -> Callable[[], Train]:
        command = [*args, *hosts, "--process-id", str(i)]
        return lambda: Train(command, tmp_path / f"logs{i}", devices=2, compile_fast=True)

    with training(start(0), start(1)) as runs:
        wait_until(lambda: saved_updates(out), runs, 180, "first checkpoint")
        runs[1].signal(signal.SIGTERM)
        assert wait_all(runs, timeout=45) == [143, 143], runs[0].stderr + runs[1].stderr
    err0, err1 = runs[0].stderr, runs[1].stderr
    assert "Traceback" not in err0 + err1, err0 + err1
    assert f"purejaxppo: SIGTERM: {STOP_NOTE}" in err1 and STOP_NOTE not in err0
    summary = json.loads((out / "summary.json").read_text())
    done = summary["updates_done"]
    assert 2 <= done < total and not summary["complete"]
    assert saved_updates(out)[-1] == done
    assert (
        f"purejaxppo: stopped after {done} of {total} updates; checkpoint saved. "
        f"Continue with: purejaxppo train --resume {out}"
    ) in err0
    assert "stopped after" not in err1 and "Continue with" not in err1
    assert "training" not in runs[1].stdout
    assert len(read_rows(out / "metrics.csv")) == 2 * done

    capsys.readouterr()
    rest = ["--chunk-updates", str(total - done), "--checkpoint-every", "0"]  # one program
    assert main(["train", "--resume", str(out), "--no-progress", *rest]) == 0
    assert f"resuming after update {done}" in capsys.readouterr().out
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["complete"] and resumed["updates_done"] == total
    rows = read_rows(out / "metrics.csv")
    assert sorted((int(r["run"]), int(r["update"])) for r in rows) == [
        (run, update) for run in range(2) for update in range(1, total + 1)
    ]
