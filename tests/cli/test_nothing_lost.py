"""No way for a run to lose data (issue 23): one writer per run directory, every check before
any write, a failed save that stops the run in one line and keeps the newest complete
checkpoint, a damaged checkpoint passed over for an intact one, and a resumed metrics.csv
equal to an uninterrupted one byte for byte."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orbax.checkpoint as ocp
import pytest
from fast_compile import fast_cpu_env, trainers_compiled_fast
from suite_helpers import forbid_compiling, stop_after

from purejaxppo.cli.main import main
from purejaxppo.outputs import checkpoint, storage
from purejaxppo.outputs.run_lock import LOCK_NAME, acquire

# 2 runs x 4 envs x 8 steps, 1 epoch.
TINY = [
    "--env", "CartPole-v1", "--num-envs", "4", "--set", "num_steps=8", "--set",
    "update_epochs=1", "--set", "num_minibatches=2", "--num-seeds", "2", "--no-progress",
]  # fmt: skip
# 6 updates in chunks of 2, a checkpoint after each.
SIX = [
    *TINY,
    "--total-timesteps",
    str(4 * 8 * 6),
    "--chunk-updates",
    "2",
    "--checkpoint-every",
    "1",
]


# Nothing here is compared bit for bit with a run compiled or chunked otherwise, nor must
# learn a return: its trainers compile fast.
pytestmark = pytest.mark.usefixtures("compiled_fast")


@pytest.fixture
def compiled_fast():
    """The trainers this test makes compile fast (`fast_compile.trainers_compiled_fast`)."""
    with trainers_compiled_fast():
        yield


def files_of(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def stopped_run(out: Path, monkeypatch, chunks: int = 2, extra=()) -> None:
    """`SIX` stopped by a SIGTERM after `chunks` chunks (a checkpoint at update 2 * chunks)."""
    stop_after(monkeypatch, chunks)
    assert main(["train", *SIX, *extra, "--out", str(out)]) == 128 + signal.SIGTERM
    stop_after(monkeypatch, 100)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """`SIX`, uninterrupted."""
    out = tmp_path_factory.mktemp("whole") / "run"
    with trainers_compiled_fast():
        assert main(["train", *SIX, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def stopped_once(tmp_path_factory):
    """`SIX` stopped after 2 chunks (checkpoints 2 and 4), trained once for the module."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as patch, trainers_compiled_fast():
        stopped_run(out, patch)
    return out


@pytest.fixture
def stopped(stopped_once, tmp_path):
    """A copy of `stopped_once` of this test's own, at `tmp_path / "run"`."""
    out = tmp_path / "run"
    shutil.copytree(stopped_once, out)
    return out


# On the tests of the module's shared runs: one xdist worker trains each of them once.
shares_runs = pytest.mark.xdist_group("nothing_lost")


@shares_runs
def test_a_resumed_metrics_csv_equals_an_uninterrupted_one_byte_for_byte(whole, stopped, capsys):
    out = stopped
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "resuming after update 4" in capsys.readouterr().out
    assert (out / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    lines = (out / "metrics.csv").read_text().splitlines()[1:]
    keys = [tuple(int(x) for x in (line.split(",")[0], line.split(",")[2])) for line in lines]
    assert keys == sorted(keys) and len(keys) == 2 * 6  # (run, update) order


@shares_runs
def test_a_run_dir_in_use_is_refused_and_left_as_it_was(stopped, capsys):
    out = stopped
    before = files_of(out)
    lock = acquire(out, "train")  # a live holder (another open file description)
    try:
        capsys.readouterr()
        assert main(["train", "--resume", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"purejaxppo: error: {out} is in use by purejaxppo train (pid ")
        assert err.count("\n") == 1
        lock_file = out / LOCK_NAME
        assert files_of(out) == before | {LOCK_NAME: lock_file.read_bytes()}
    finally:
        lock.release()
    assert files_of(out) == before  # the refused command changed nothing


def test_a_fresh_run_into_a_directory_in_use_is_refused(tmp_path, capsys, monkeypatch):
    forbid_compiling(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    lock = acquire(out, "train")  # another run, just started
    try:
        assert main(["train", *SIX, "--out", str(out)]) == 2
        assert "is in use by purejaxppo train" in capsys.readouterr().err
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]
    finally:
        lock.release()


def test_a_refused_resume_changes_no_file(tmp_path, monkeypatch, capsys):
    """The tracker cannot start on resume: refused in one line, and metrics.csv, config.json
    and the tracker ids are as they were (they used to be emptied first)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    out = tmp_path / "run"
    stopped_run(out, monkeypatch, extra=["--wandb", "p"])
    before = {name: data for name, data in files_of(out).items() if "wandb/" not in name}
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2 * 4

    import wandb

    def no_login(*args, **kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", no_login)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--wandb 'p': the tracker did not start" in err and err.count("\n") == 1
    after = {name: data for name, data in files_of(out).items() if "wandb/" not in name}
    assert after == before


def test_no_room_for_the_final_checkpoint_is_refused_before_anything(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    usage = shutil.disk_usage(tmp_path)
    small = usage._replace(free=100_000)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: small)
    out = tmp_path / "run"
    assert main(["train", *SIX, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} has 0.1 MiB free, but the run's final checkpoint needs about" in err
    assert err.count("\n") == 1
    assert not out.exists()  # made for the lock, and removed with it


def failed_write_line(out: Path, failed: str) -> str:
    """The one line of a run that could not write after its checkpoint of update 2."""
    newest = checkpoint.checkpoint_dir(out) / "2"
    return (
        f"purejaxppo: error: {failed}; the newest complete checkpoint is {newest}. Once there "
        f"is room, continue with: purejaxppo train --resume {out}\n"
    )


def fail_saves_from(monkeypatch, first_failing: int) -> None:
    """Saves of `first_failing` updates and later fail as a full disk does: orbax has made
    its temporary directory and TensorStore reports ENOSPC."""
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step < first_failing:
            return real_save(self, step, *args, **kwargs)
        partial = Path(self.directory) / f"{step}.orbax-checkpoint-tmp"
        (partial / "state").mkdir(parents=True)
        (partial / "state" / "data").write_bytes(b"\0" * 1000)
        raise ValueError(
            'RESOURCE_EXHAUSTED: Error writing "state.key/0.0": Failed to write 2001870 bytes '
            f"to file 7: No space left on device [os_error_code='{errno.ENOSPC}']"
        )

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)


@shares_runs
def test_a_failed_save_stops_the_run_in_one_line_and_resumes(whole, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    fail_saves_from(monkeypatch, 4)
    assert main(["train", *SIX, "--out", str(out)]) == 4
    failed = (
        f"saving checkpoint {checkpoint.checkpoint_dir(out) / '4'} failed (No space left on device)"
    )
    assert capsys.readouterr().err == failed_write_line(out, failed)
    assert sorted(p.name for p in checkpoint.checkpoint_dir(out).iterdir()) == ["2"]
    assert not (out / LOCK_NAME).exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


def fail_metrics_from(monkeypatch, chunk: int) -> None:
    """The `chunk`-th append to metrics.csv (1-based) and later ones fail as a buffered
    write on a full disk does: an `OSError` that names no file."""
    from purejaxppo.outputs.logs import MetricsCsv

    real_append, real_rows, appends = MetricsCsv.append, MetricsCsv.rows, []

    def append(self, *args):
        appends.append(args)
        return real_append(self, *args)

    def rows(self, *args):
        if len(appends) >= chunk:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_rows(self, *args)

    monkeypatch.setattr(MetricsCsv, "append", append)
    monkeypatch.setattr(MetricsCsv, "rows", rows)


def test_a_failed_write_of_metrics_is_one_line(tmp_path, monkeypatch, capsys):
    fail_metrics_from(monkeypatch, 1)
    out = tmp_path / "run"
    assert main(["train", *SIX, "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert err == (
        f"purejaxppo: error: cannot write {out / 'metrics.csv'}: No space left on device; "
        "no checkpoint is on disk\n"
    )


@shares_runs
def test_a_failed_write_stops_the_run_at_the_chunk_and_keeps_the_checkpoint(
    whole, tmp_path, monkeypatch, capsys
):
    """The second chunk's rows cannot be written: the run stops there, saves no checkpoint
    after the failure (its files would disagree with it), writes no summary, and resumes."""
    fail_metrics_from(monkeypatch, 2)
    out = tmp_path / "run"
    assert main(["train", *SIX, "--out", str(out)]) == 4
    failed = f"cannot write {out / 'metrics.csv'}: No space left on device"
    assert capsys.readouterr().err == failed_write_line(out, failed)
    assert checkpoint.saved_steps(out) == [2] and not (out / "summary.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


def damage_newest(out: Path) -> int:
    """Cut the largest data file of the newest checkpoint to 1000 bytes; its update count."""
    newest = checkpoint.saved_steps(out)[0]
    files = [p for p in (checkpoint.checkpoint_dir(out) / str(newest)).rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    os.truncate(largest, 1000)
    return newest


@shares_runs
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(whole, stopped, capsys):
    out = stopped  # checkpoints 2 and 4
    assert damage_newest(out) == 4
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    err = capsys.readouterr().err
    intact = checkpoint.checkpoint_dir(out) / "2"
    assert err.startswith(f"purejaxppo: checkpoint {checkpoint.checkpoint_dir(out) / '4'} is ")
    assert err.endswith(f"using the newest intact one instead, {intact}\n")
    assert err.count("\n") == 1  # no ignored-exception tracebacks
    assert json.loads((out / "eval.json").read_text())["updates_done"] == 2

    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "resuming after update 2" in captured.out
    assert f"the damaged checkpoint is kept as {checkpoint.checkpoint_dir(out) / 'damaged-4'}" in (
        captured.err
    )
    assert (out / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    assert checkpoint.saved_steps(out) == [6, 4]


@shares_runs
def test_every_checkpoint_damaged_is_one_line(stopped, capsys):
    out = stopped
    damage_newest(out)
    shutil.rmtree(checkpoint.checkpoint_dir(out) / "2")
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"purejaxppo: error: no intact checkpoint under {out}")
    assert err.count("\n") == 1


# A 4 MiB file system of its own (a mount namespace: root, as on the CI machine), then
# a run whose second checkpoint does not fit, and one that only saves at the end.
FULL_DISK = textwrap.dedent(
    """
    set -e
    mount -t tmpfs -o size=4m tmpfs "$1"
    shift
    set +e
    "$@" --out "$MNT/periodic" --checkpoint-every 1 >/dev/null 2>"$MNT/../periodic.err"
    echo "periodic $?"
    ls "$MNT/periodic/checkpoints" | tr '\\n' ' '; echo
    "$@" --out "$MNT/fresh" --checkpoint-every 1 >/dev/null 2>"$MNT/../fresh.err"
    echo "fresh $?"
    rm -rf "$MNT/periodic"
    "$@" --out "$MNT/at-end" --checkpoint-every 0 >/dev/null 2>"$MNT/../at-end.err"
    echo "at-end $?"
    ls "$MNT/at-end/checkpoints" | tr '\\n' ' '; echo
    """
)


@pytest.mark.slow
def test_a_full_file_system(tmp_path):
    """A real full disk: the second save fails in one line and keeps the first; a run that
    cannot fit its final checkpoint is refused before training; one that saves only at the
    end, with room for that save, gets it."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = [sys.executable, "-m", "purejaxppo", "train", *TINY, "--chunk-updates", "5"]
    run += ["--set", "hidden_sizes=256,256", "--total-timesteps", str(4 * 8 * 20)]
    env = fast_cpu_env({**os.environ, "MNT": str(mnt)})  # a full disk, whatever the rounding
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", FULL_DISK, "sh", str(mnt), *run],
        capture_output=True, text=True, env=env, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "periodic 4" and lines[1].split() == ["5"], done.stdout
    err = (tmp_path / "periodic.err").read_text()
    assert "Traceback" not in err and err.count("purejaxppo: error:") == 1
    assert "failed (No space left on device); the newest complete checkpoint is " in err
    assert lines[2] == "fresh 2", done.stdout  # no room left for even one checkpoint
    assert (
        "free, but the run's final checkpoint needs about" in (tmp_path / "fresh.err").read_text()
    )
    assert lines[3] == "at-end 0", (tmp_path / "at-end.err").read_text()
    assert lines[4].split() == ["20"]


@pytest.mark.slow
def test_two_trains_started_on_one_directory(tmp_path, capsys):
    """Two `train --out RUN` at once: one trains (every row once), the other is refused in
    one line naming it; then `--resume` of the run while it trains (from this process, a
    third one) is refused too."""
    out = tmp_path / "run"
    long = [*TINY, "--total-timesteps", str(4 * 8 * 400), "--chunk-updates", "5"]
    command = [sys.executable, "-m", "purejaxppo", "train", *long, "--out", str(out)]
    env = fast_cpu_env(dict(os.environ))  # the lock is tested, not the rounding
    procs = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    try:
        deadline = time.time() + 240
        while not checkpoint.saved_steps(out):  # the first periodic checkpoint
            assert any(p.poll() is None for p in procs) and time.time() < deadline
            time.sleep(0.05)
        capsys.readouterr()
        resume_code = main(["train", "--resume", str(out)])
        refused_resume = capsys.readouterr()
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    refused = next(err for p, (_, err) in zip(procs, results, strict=True) if p.returncode == 2)
    assert refused.startswith(f"purejaxppo: error: {out} is in use by purejaxppo train (pid ")
    assert refused.count("\n") == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2 * 400
    # Refused as in use, or (if the run had finished) as having nothing left to train.
    assert resume_code in (0, 2), refused_resume.err
    if resume_code == 2:
        assert "is in use by purejaxppo train" in refused_resume.err
    else:
        assert "nothing to train" in refused_resume.out


@pytest.mark.slow
def test_a_check_refused_on_one_of_two_processes_refuses_both(tmp_path):
    """The tracker starts on process 0 alone; when it cannot, process 1 must not go on into
    the run (it used to wait in a collective until jax's heartbeat killed it)."""
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "no-such-mode"}
    out = tmp_path / "run"
    hosts = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--out", str(out)]
    command = [sys.executable, "-m", "purejaxppo", "train", *SIX, "--wandb", "p", *hosts]
    procs = [
        subprocess.Popen(
            [*command, "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [2, 2], results
    first, second = (err for _, err in results)
    assert "--wandb 'p': the tracker did not start" in first and "Traceback" not in first
    assert "another process of this run refused it" in second and "Traceback" not in second
    assert not out.exists() or not (out / "metrics.csv").exists()
