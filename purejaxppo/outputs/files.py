"""Whole-file writes that never leave a half-written file (the text goes to a temporary file
beside the target, which then replaces it in one rename), and OS errors that name the file
the user knows rather than a temporary one or none (a buffered write's error has none)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Any `OSError` in the block is raised again naming `path`."""
    try:
        yield
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def replace_file(path: Path, write: Callable[[TextIO], None]) -> None:
    """Write `path` anew through `write(file)`: the old file stays whole until the new one
    is complete (a full disk or a kill leaves one or the other, never a mix)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        with writing(path), temporary.open("w", newline="") as file:
            write(file)
        with writing(path):
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def replace_text(path: Path, text: str) -> None:
    """`path` holds `text`, written as `replace_file` does."""
    replace_file(path, lambda file: file.write(text))


def remove_temporaries(directory: Path) -> None:
    """Remove what `replace_file` left in `directory` when its process was killed."""
    for path in directory.glob(f".*{TEMPORARY_SUFFIX}"):
        path.unlink(missing_ok=True)
