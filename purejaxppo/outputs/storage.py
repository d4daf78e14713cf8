"""The disk under checkpoints: room for the final save before a run starts, what a failed
save leaves behind, and orbax's many reports of one failure kept to the caller's one line.
Nothing here knows a checkpoint's layout (`purejaxppo.outputs.checkpoint` does)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax

from purejaxppo.errors import ConfigError

# A checkpoint's size on disk against its arrays' bytes: orbax's metadata and the JSON.
SAVE_OVERHEAD = 1.05
SAVE_FIXED_BYTES = 256 * 1024


def failure_cause(error: BaseException) -> str:
    """The OS's words for the error under `error` (TensorStore writes the code into its
    message), else its first line."""
    text = str(error)
    found = re.search(r"os_error_code='(\d+)'", text)
    if found:
        return os.strerror(int(found.group(1)))
    errno_of = getattr(error, "errno", None)
    if isinstance(error, OSError) and errno_of:
        return os.strerror(errno_of)
    return first_line(error)


def remove_partial_saves(directory: Path, settle_s: float = 0.1, attempts: int = 20) -> None:
    """Remove the temporary directories of unfinished saves under `directory`. TensorStore's
    own threads can still be writing into a failed save's directory after the error is
    raised, so it is removed until it stays removed for `settle_s`."""
    for _ in range(attempts):
        partial = [p for p in directory.glob("*.orbax-checkpoint-tmp*") if p.is_dir()]
        if not partial:
            return
        for path in partial:
            shutil.rmtree(path, ignore_errors=True)
        time.sleep(settle_s)


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """orbax logs a failed write from each of its threads, with tracebacks, and re-raises it
    in ours: keep only ours, which the caller turns into one line."""
    logger = logging.getLogger("absl")
    level, hook = logger.level, threading.excepthook
    logger.setLevel(logging.CRITICAL)
    threading.excepthook = lambda args: None
    try:
        yield
    finally:
        logger.setLevel(level)
        threading.excepthook = hook


def check_disk_room(out: Path, checkpoint_bytes: int, other_bytes: int = 0) -> None:
    """A `ConfigError` unless the disk under `out` has room for one checkpoint of
    `checkpoint_bytes` and `other_bytes` of other files (so the final save can succeed); a
    notice if it has no room for the three checkpoints a periodic save has on disk at once
    (two kept, one being written)."""
    free = shutil.disk_usage(out).free
    need = int(checkpoint_bytes * SAVE_OVERHEAD) + SAVE_FIXED_BYTES
    if free < need + other_bytes:
        raise ConfigError(
            f"{out} has {mib(free)} free, but the run's final checkpoint needs about "
            f"{mib(need)} and its metrics files {mib(other_bytes)}: free some space, or "
            "write the run elsewhere (--out)"
        )
    if free < 3 * need + other_bytes and jax.process_index() == 0:
        print(
            f"purejaxppo: {out} has {mib(free)} free, room for fewer than the 3 checkpoints "
            f"of {mib(need)} a periodic save can need; if one fails, the run stops and keeps "
            "the newest complete checkpoint",
            file=sys.stderr,
            flush=True,
        )


def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def silence_failed_save() -> None:
    """After a failed save, orbax's threads go on reporting the same failure (logs, and
    tracebacks of its threads and asyncio futures) after the error has reached the caller,
    which says it in one line: from now on, in this process, orbax's and asyncio's logs below
    critical and exceptions of threads running orbax code are dropped; other threads'
    exceptions are reported as before."""
    for logger in ("absl", "asyncio"):  # asyncio: its futures' "never retrieved" reports
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    report = threading.excepthook

    def drop_orbax_threads(args: Any) -> None:
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback else []
        if not any("/orbax/" in frame.filename for frame in frames):
            report(args)

    if getattr(report, "__name__", "") != "drop_orbax_threads":
        threading.excepthook = drop_orbax_threads


def first_line(error: BaseException, limit: int = 200) -> str:
    """The error's type and first line, without TensorStore's appended spec, at most
    `limit` characters."""
    lines = str(error).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0].strip() if lines else ""
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(error).__name__}: {text}"
