"""Whole-file writes that never leave a half-written file: the text goes to a temporary file
beside the target, which then replaces it in one rename."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def replace_file(path: Path, write: Callable[[TextIO], None]) -> None:
    """Write `path` anew through `write(file)`: the old file stays whole until the new one
    is complete (a full disk or a kill leaves one or the other, never a mix)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", newline="") as file:
            write(file)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def replace_text(path: Path, text: str) -> None:
    """`path` holds `text`, written as `replace_file` does."""
    replace_file(path, lambda file: file.write(text))
