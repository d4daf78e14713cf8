"""Checkpoints: a checkpoint of other shapes, of an older format, missing or corrupt is
refused with a one-line `CheckpointError`."""

import os
from pathlib import Path

import pytest
from small_runs import CONFIG

from purejaxppo import make_train
from purejaxppo.outputs import checkpoint
from purejaxppo.outputs.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    open_manager,
    restore_checkpoint,
    save_checkpoint,
)
from purejaxppo.runs.chunked import abstract_train_state


def _save(run, path: Path) -> None:
    meta = {"updates_done": run.updates_done, "env": CONFIG.env}
    save_checkpoint(open_manager(path), run.state, run.metrics, meta)


def test_mismatched_checkpoint_is_refused(population, uninterrupted, tmp_path):
    _save(uninterrupted, tmp_path)
    other = make_train(CONFIG.replace(num_envs=8, total_timesteps=8 * 8 * 7))
    with pytest.raises(CheckpointError, match=r"does not match this run: .* expected"):
        restore_checkpoint(tmp_path, abstract_train_state(other, population), 4)
    pendulum = make_train(CONFIG.replace(env="Pendulum-v1"))
    with pytest.raises(CheckpointError, match="does not match this run"):
        restore_checkpoint(tmp_path, abstract_train_state(pendulum, population), 4)


def test_checkpoint_of_an_older_format_is_refused(
    trainer, population, uninterrupted, tmp_path, monkeypatch
):
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION - 1)
    _save(uninterrupted, tmp_path)
    monkeypatch.undo()
    old, new = checkpoint.FORMAT_VERSION - 1, checkpoint.FORMAT_VERSION
    with pytest.raises(CheckpointError, match=f"has format {old}; this version reads format {new}"):
        restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 4)


def test_missing_and_corrupt_checkpoints_are_refused(trainer, population, uninterrupted, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint under"):
        restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 4)
    _save(uninterrupted, tmp_path)
    step_dir = checkpoint_dir(tmp_path) / str(CONFIG.num_updates)
    data_files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    assert data_files
    for path in data_files:  # every stored byte of the arrays replaced by garbage
        path.write_bytes(os.urandom(max(16, path.stat().st_size)))
    with pytest.raises(CheckpointError, match="unreadable") as refused:
        restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 4)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400
    (step_dir / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 4)


def test_checkpoint_errors_are_cut_to_one_short_line():
    from purejaxppo.outputs.checkpoint import _first_line

    tensorstore = ValueError(
        "Encountered error while reading array index (0, 0): DATA_LOSS: bad chunk. "
        "See full TensorStore details: <bound method spec of TensorStore({...})>\nmore"
    )
    assert _first_line(tensorstore) == (
        "ValueError: Encountered error while reading array index (0, 0): DATA_LOSS: bad chunk."
    )
    assert len(_first_line(OSError("x" * 1000))) == len("OSError: ") + 200
