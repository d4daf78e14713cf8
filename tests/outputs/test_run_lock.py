"""One writer per run directory: a live holder refuses a second one by name, a killed holder's
lock is taken over, a refused command leaves no directory behind, and every process of a run
refuses together."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from purejaxppo.errors import ConfigError
from purejaxppo.outputs.run_lock import LOCK_NAME, acquire, hold_run_dir, refuse_if_in_use

# Takes the lock on argv[1] in a process of its own, says so, then waits to be killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from purejaxppo.outputs.run_lock import acquire
    acquire(Path(sys.argv[1]), "train")
    print("locked", flush=True)
    time.sleep(120)
    """
)


def start_holder(out):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(ConfigError) as refused:
            acquire(tmp_path, "train")
        message = str(refused.value)
        assert f"is in use by purejaxppo train (pid {holder.pid} on " in message
        assert "choose another output directory" in message and "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The killed holder's file is still there, naming it; its lock died with it.
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    lock = acquire(tmp_path, "train")
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()  # released: the directory is as it was


def test_one_process_holds_it_at_a_time_within_a_process_too(tmp_path):
    with hold_run_dir(tmp_path) as lock:
        assert lock is not None and (tmp_path / LOCK_NAME).exists()
        with (
            pytest.raises(ConfigError, match="is in use by purejaxppo train"),
            hold_run_dir(tmp_path),
        ):
            pass
        assert (tmp_path / LOCK_NAME).exists()  # the refused one released nothing
    with hold_run_dir(tmp_path, "train"):  # free again
        pass


def test_a_refused_command_leaves_no_directory_it_made(tmp_path):
    out = tmp_path / "new" / "deeper" / "run"
    with pytest.raises(ConfigError, match="no tracker"), hold_run_dir(out):
        raise ConfigError("no tracker")
    assert list(tmp_path.iterdir()) == []  # not even the parents it made
    with hold_run_dir(out):
        (out / "config.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # kept: it was written


def test_every_process_refuses_when_process_0_cannot_lock(tmp_path):
    """Process 1 takes no lock itself; it learns process 0's outcome through `agree`."""
    holder = start_holder(tmp_path)
    try:
        process_0 = hold_run_dir(tmp_path, takes_lock=True, agree=lambda ok: ok)
        with pytest.raises(ConfigError, match="in use by purejaxppo train"), process_0:
            raise AssertionError("process 0 went on")
        process_1 = hold_run_dir(tmp_path, takes_lock=False, agree=lambda ok: False)
        with (
            pytest.raises(ConfigError, match="another process of this run could not prepare"),
            process_1,
        ):
            raise AssertionError("process 1 went on")
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_probe_names_the_holder_and_creates_nothing(tmp_path):
    refuse_if_in_use(tmp_path)  # no lock file: free
    assert list(tmp_path.iterdir()) == []
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(ConfigError, match=f"in use by purejaxppo train \\(pid {holder.pid} "):
            refuse_if_in_use(tmp_path)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    refuse_if_in_use(tmp_path)  # its holder is gone


def test_a_lock_that_cannot_be_written_is_released(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    out = tmp_path / "run"
    full_disk = hold_run_dir(out)
    with pytest.raises(ConfigError, match=r"cannot write .*: No space left on device"), full_disk:
        pass
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    with hold_run_dir(tmp_path):  # nothing was left held
        pass


def test_an_unwritable_directory_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    under_a_file = hold_run_dir(afile / "run")
    with pytest.raises(ConfigError, match="cannot write to output directory"), under_a_file:
        pass
