"""One writer per run directory: `hold_run_dir(out)` takes an exclusive lock on
`<out>/.purejaxppo.lock` for as long as a command trains into `out`.

The lock is an advisory `flock`, which the kernel drops when its holder exits in any way
(SIGKILL included), so a lock file left by a killed process is free and simply taken over;
the file names its holder (pid, host, command, start) for the refusal message. Of a run of
several processes, process 0 takes the lock and every process learns the outcome (one
collective), so all of them refuse together. Readers (`eval`, `export`, `render`) take no
lock: `purejaxppo.outputs.checkpoint` retries a checkpoint deleted under them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from purejaxppo.errors import ConfigError

LOCK_NAME = ".purejaxppo.lock"


@dataclasses.dataclass
class RunDirLock:
    """A held lock on a run directory (`release` it, or leave the process)."""

    path: Path
    fd: int | None

    def release(self) -> None:
        """Remove the lock file while still holding it (no other process can hold a lock on
        the file being removed: `acquire` checks it locked the file at the path), then
        unlock."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


def holder_text(path: Path) -> str:
    """Who holds the lock at `path`, as its holder wrote it."""
    try:
        holder = json.loads(path.read_text())
        return (
            f"purejaxppo {holder['command']} (pid {holder['pid']} on {holder['host']}, "
            f"since {holder['since']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def acquire(out: Path, command: str) -> RunDirLock:
    """Lock `out` (which must exist) for `command`; a `ConfigError` naming the holder if a
    live process holds it."""
    path = out / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ConfigError(f"cannot write to output directory {out}: {error.strerror}") from None
        if not try_lock(fd, path):
            os.close(fd)
            raise in_use(out)
        if same_file(fd, path):
            break
        os.close(fd)  # its holder removed the file as we opened it: lock the new one
    holder = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    lock = RunDirLock(path, fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
    except OSError as error:  # a full disk: nothing is left behind, and nothing is held
        lock.release()
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    return lock


def try_lock(fd: int, path: Path) -> bool:
    """Take the exclusive lock on `fd` if no other open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise ConfigError(f"cannot lock {path}: {error.strerror}") from None
        return False
    return True


def in_use(out: Path) -> ConfigError:
    return ConfigError(
        f"{out} is in use by {holder_text(out / LOCK_NAME)}: one command at a time trains "
        "into a run directory; wait for it to end, or choose another output directory"
    )


def refuse_if_in_use(out: Path) -> None:
    """A `ConfigError` naming the holder if a live process holds `out`'s lock (a probe that
    takes and drops the lock; it creates nothing)."""
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody trains here
    try:
        if not try_lock(fd, path):
            raise in_use(out)
    finally:
        os.close(fd)


def same_file(fd: int, path: Path) -> bool:
    """Whether the open `fd` is still the file at `path`."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def only_holds_lock(out: Path) -> bool:
    """Whether `out` holds nothing but the lock file."""
    return {p.name for p in out.iterdir()} <= {LOCK_NAME}


@contextlib.contextmanager
def hold_run_dir(
    out: Path,
    command: str = "train",
    takes_lock: bool = True,
    agree: Callable[[bool], bool] | None = None,
) -> Iterator[RunDirLock | None]:
    """Create `out` if needed and hold its lock for the block (`takes_lock`: this process
    takes it; `agree(ok)`, given with several processes, is true when every process's `ok`
    is). The directories this call created are removed again if the block leaves nothing in
    them but the lock, so a refused command leaves no trace."""
    created = first_missing(out)
    lock, refusal = None, None
    try:
        out.mkdir(parents=True, exist_ok=True)
        if takes_lock:
            lock = acquire(out, command)
    except OSError as error:
        refusal = ConfigError(f"cannot write to output directory {out}: {error.strerror}")
    except ConfigError as error:
        refusal = error
    try:
        if agree is not None and not agree(refusal is None) and refusal is None:
            refusal = ConfigError(
                f"another process of this run could not prepare {out} (its console says why)"
            )
        if refusal is not None:
            raise refusal
        yield lock
    finally:
        if lock is not None:
            lock.release()
        if created is not None:
            remove_if_unused(created, out)


def first_missing(out: Path) -> Path | None:
    """The outermost directory of `out` (itself included) that does not exist yet."""
    missing = None
    for path in (out, *out.parents):
        if path.exists():
            break
        missing = path
    return missing


def remove_if_unused(top: Path, out: Path) -> None:
    """Remove `out` and its parents up to `top` if they hold nothing but the lock file."""
    with contextlib.suppress(OSError):
        if out.is_dir() and only_holds_lock(out):
            (out / LOCK_NAME).unlink(missing_ok=True)
            for path in (out, *out.parents):
                path.rmdir()  # fails, and stops, at the first one that is not empty
                if path == top:
                    break
