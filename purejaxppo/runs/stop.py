"""SIGINT and SIGTERM for a command line: a first signal asks a training run to stop at the
next chunk boundary (and save), a second one ends the process at once.

Python runs a signal handler only between bytecodes of the main thread, which may be inside
XLA for minutes, and jax's garbage-collection callback can swallow the `KeyboardInterrupt`
that the default SIGINT handler raises. So the handler installed here only records the
signal, and its number also reaches a pipe (`signal.set_wakeup_fd`, written by the C-level
handler the moment the signal arrives), and a small thread reading that pipe records the
stop, prints one line, and ends the process on a second signal. This module imports no jax:
`purejaxppo.cli.main` installs it before anything else is imported.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    """Context manager: SIGINT/SIGTERM stop the work.

    With `graceful` (training), the first signal is recorded (`requested()` returns its
    number, which `run_chunked(stop_requested=...)` polls) and a second one exits at once with
    status 128 + its number. Without it (commands that save nothing on the way), the first
    signal exits at once. Either way the process says so in one line on stderr. Outside the
    main thread it installs nothing."""

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS, graceful: bool = True):
        self.signals, self.graceful = tuple(signals), graceful
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}
        self._previous_fd: int | None = None
        self._pipe: tuple[int, int] | None = None
        self._reader: threading.Thread | None = None
        self._announced = False

    def requested(self) -> int:
        """The number of the signal that asked to stop, or 0."""
        return self.signal_number or 0

    def record(self, signum: int, frame: Any = None) -> None:
        """The Python-level handler: note the first signal (so the loop sees it at once
        when the main thread is free); the reading thread speaks and exits."""
        if self.signal_number is None:
            self.signal_number = signum

    def on_signal(self, signum: int) -> None:
        """What a signal does, called from the reading thread as each one arrives."""
        name = signal.Signals(signum).name
        if self.graceful and not self._announced:
            self._announced = True
            self.record(signum)
            say(
                f"\npurejaxppo: {name}: stopping at the end of this chunk and saving a "
                "checkpoint (Ctrl-C again to exit now, without saving)"
            )
            return
        again = " again" if self._announced else ""
        say(f"\npurejaxppo: {name}{again}: exiting now")
        os._exit(128 + signum)

    def _read(self, read_end: int) -> None:
        """The reading thread: act on each signal until the pipe's write end is closed, then
        close the read end (here, so no other thread closes it while it is read)."""
        try:
            while data := os.read(read_end, 64):
                for signum in data:
                    if signum in self.signals:
                        self.on_signal(signum)
        except OSError:
            pass
        finally:
            os.close(read_end)

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        self._reader = threading.Thread(target=self._read, args=(read_end,), daemon=True)
        self._reader.start()
        self._previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self.record)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
            os.close(self._pipe[1])  # the reader sees the end of its pipe and closes it
            if self._reader is not None:
                self._reader.join(timeout=5)
            self._pipe = self._reader = None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
