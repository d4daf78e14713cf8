"""The command line's exit statuses, in one place (the README lists them)."""

from __future__ import annotations

EXIT_USAGE = 2
"""Bad input: one line naming the flag, before anything was compiled or written."""

EXIT_NAN = 3
"""A run's loss became NaN or infinite (every file kept)."""

EXIT_WRITE = 4
"""A file or checkpoint could not be written (a full disk): one line with the cause and the
newest complete checkpoint."""

# 128 + N: stopped by signal N (130 for SIGINT, 143 for SIGTERM), as a shell reports it.


def write_failure(error: OSError) -> str:
    """One line for an OS error: the file and the system's words."""
    where = f"{error.filename}: " if error.filename else ""
    return f"cannot write {where}{error.strerror or error}"
