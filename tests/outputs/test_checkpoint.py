"""Checkpoints: a checkpoint of other shapes, of an older format, missing or corrupt is
refused with a one-line `CheckpointError`."""

import os
import shutil
from pathlib import Path

import pytest
from small_runs import CONFIG

from purejaxppo import ConfigError, make_train
from purejaxppo.outputs import checkpoint, storage
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
    from purejaxppo.outputs.storage import first_line

    tensorstore = ValueError(
        "Encountered error while reading array index (0, 0): DATA_LOSS: bad chunk. "
        "See full TensorStore details: <bound method spec of TensorStore({...})>\nmore"
    )
    assert first_line(tensorstore) == (
        "ValueError: Encountered error while reading array index (0, 0): DATA_LOSS: bad chunk."
    )
    assert len(first_line(OSError("x" * 1000))) == len("OSError: ") + 200


def _save_at(run, path: Path, updates: int) -> None:
    """The run's state with its first `updates` metrics, saved as the checkpoint after
    `updates` updates (keeping every checkpoint)."""
    import jax

    metrics = jax.tree.map(lambda m: m[:, :updates], run.metrics)
    meta = {"updates_done": updates, "env": CONFIG.env}
    save_checkpoint(open_manager(path, max_to_keep=10), run.state, metrics, meta)


def test_a_checkpoint_deleted_while_read_is_retried_on_the_newest(
    trainer, population, uninterrupted, tmp_path, monkeypatch
):
    """What `eval` meets while the run it reads trains on: the training run saves a newer
    checkpoint and deletes the one being read."""
    for updates in (3, 5):
        _save_at(uninterrupted, tmp_path, updates)
    real_restore_step = checkpoint.restore_step
    read = []

    def deleted_under_the_reader(out, step, *args):
        read.append(step)
        if len(read) == 1:  # training finished update 7 and dropped the oldest two
            _save_at(uninterrupted, tmp_path, 7)
            for old in (3, 5):
                shutil.rmtree(checkpoint_dir(tmp_path) / str(old))
        return real_restore_step(out, step, *args)

    monkeypatch.setattr(checkpoint, "restore_step", deleted_under_the_reader)
    restored = restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 4)
    assert read == [5, 7] and restored.updates_done == 7 and restored.damaged == ()


def test_a_damaged_newest_checkpoint_gives_way_to_an_intact_one(
    trainer, population, uninterrupted, tmp_path
):
    for updates in (3, 5, 7):
        _save_at(uninterrupted, tmp_path, updates)
    for updates in (7, 5):
        step_dir = checkpoint_dir(tmp_path) / str(updates)
        largest = max(
            (p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
        )
        os.truncate(largest, 1000)
    restored = restore_checkpoint(tmp_path, abstract_train_state(trainer, population), 4)
    assert restored.updates_done == 3
    assert [step for step, _ in restored.damaged] == [7, 5]
    assert all("is unreadable" in reason for _, reason in restored.damaged)
    moved = checkpoint.set_aside_damaged(tmp_path, restored.damaged)
    assert [p.name for p in moved] == ["damaged-7", "damaged-5"]
    assert checkpoint.saved_steps(tmp_path) == [3]


def test_a_failed_save_removes_its_temporary_directory(uninterrupted, tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    _save_at(uninterrupted, tmp_path, 3)

    def fails(self, step, *args, **kwargs):
        (Path(self.directory) / f"{step}.orbax-checkpoint-tmp").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", fails)
    with pytest.raises(checkpoint.SaveError) as failed:
        _save_at(uninterrupted, tmp_path, 5)
    assert str(failed.value) == (
        f"saving checkpoint {checkpoint_dir(tmp_path) / '5'} failed (No space left on device); "
        f"the newest complete checkpoint is {checkpoint_dir(tmp_path) / '3'}"
    )
    assert sorted(p.name for p in checkpoint_dir(tmp_path).iterdir()) == ["3"]


def test_the_disk_is_checked_for_the_final_checkpoint(tmp_path, monkeypatch, capsys):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda p: usage._replace(free=2**20))
    with pytest.raises(ConfigError, match=r"has 1.0 MiB free, but .* needs"):
        storage.check_disk_room(tmp_path, 2**20, 0)
    storage.check_disk_room(tmp_path, 2**19, 0)  # fits once, not three times: a notice
    assert "room for fewer than the 3 checkpoints" in capsys.readouterr().err
    storage.check_disk_room(tmp_path, 2**16, 0)
    assert capsys.readouterr().err == ""
