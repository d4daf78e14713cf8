"""Whole-file writes: a failed write keeps the old file whole, leaves no temporary file,
and its error names the file the user knows (a buffered write's own error names none)."""

import errno
from pathlib import Path

import pytest

from purejaxppo.outputs.files import remove_temporaries, replace_file, replace_text, writing


def test_a_real_full_disk_error_names_the_file():
    full = open("/dev/full", "w")  # noqa: SIM115 (closed by the block, where it fails)
    with pytest.raises(OSError) as failed, writing(Path("metrics.csv")), full:
        full.write("x" * 100_000)  # flushed on close: the error names no file
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == "metrics.csv"


def test_a_failed_replacement_keeps_the_old_file_whole(tmp_path):
    path = tmp_path / "summary.json"
    replace_text(path, "old\n")

    def fails(file):
        file.write("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as failed:
        replace_file(path, fails)
    assert failed.value.filename == str(path)  # not the temporary file's name
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".metrics.csv.4242.tmp").write_text("half")
    (tmp_path / "metrics.csv").write_text("whole")
    remove_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
