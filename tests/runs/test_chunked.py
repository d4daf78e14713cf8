"""The chunked host loop and checkpoints: chunked == unchunked, a stopped and resumed run is
bit-identical to an uninterrupted one, bad checkpoints are refused with a clear error."""

import math
import os
import signal
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.outputs import checkpoint
from purejaxppo.outputs.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    open_manager,
    restore_checkpoint,
    save_checkpoint,
)
from purejaxppo.runs.chunked import (
    StopOnSignals,
    abstract_train_state,
    chunk_sizes,
    compile_chunked,
    default_chunk_updates,
    run_chunked,
    train_chunked,
)
from purejaxppo.runs.population import build_population

CONFIG = PPOConfig(
    num_envs=4, num_steps=8, total_timesteps=4 * 8 * 7, update_epochs=2, num_minibatches=2
)


@pytest.fixture(scope="module")
def trainer():
    return make_train(CONFIG)


@pytest.fixture(scope="module")
def population():
    return build_population(Hyperparams(), seed=3, num_seeds=2, sweep={"clip_eps": [0.1, 0.3]})


@pytest.fixture(scope="module")
def uninterrupted(trainer, population):
    return train_chunked(trainer, population, CONFIG.num_updates)


@pytest.fixture(scope="module")
def program2(trainer, population):
    """Chunks of 2 updates (and the last of 1), compiled once for the module."""
    return compile_chunked(trainer, population, 2)


def assert_bit_identical(a, b):
    a, b = (jax.tree.map(_key_data, t, is_leaf=_is_key) for t in (a, b))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_data(x):
    return jax.random.key_data(x) if _is_key(x) else x


def test_chunk_sizes_and_default():
    assert chunk_sizes(7, 3) == [3, 3, 1]
    assert chunk_sizes(7, 3, updates_done=6) == [1]
    assert chunk_sizes(6, 3, updates_done=6) == []
    assert chunk_sizes(8, 8) == [8]
    assert default_chunk_updates(976) == 61  # a divisor near 976 / 20: one compiled chunk
    assert default_chunk_updates(97) == 4  # a prime: about 1/20 and a shorter last chunk
    assert default_chunk_updates(5) == 1


def test_default_chunk_updates_is_the_divisor_rule_and_quick_for_huge_runs():
    def by_every_divisor(n: int) -> int:
        target = max(1, n // 20)
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        best = min(divisors, key=lambda d: abs(math.log(d / target)))
        return best if target / 2 <= best <= target * 2 else target

    assert [default_chunk_updates(n) for n in range(1, 400)] == [
        by_every_divisor(n) for n in range(1, 400)
    ]
    huge = 2 * 10**10  # 10^13 steps of 512: a divisor search up to n would never end
    assert default_chunk_updates(huge) == 10**9 and huge % 10**9 == 0


@pytest.mark.slow
def test_chunked_equals_one_chunk_and_the_fused_train(trainer, population, uninterrupted):
    chunked = train_chunked(trainer, population, 3)  # chunks of 3, 3, 1
    assert chunked.updates_done == CONFIG.num_updates and not chunked.stopped
    assert_bit_identical(
        (chunked.state.params, chunked.metrics),
        (uninterrupted.state.params, uninterrupted.metrics),
    )
    assert chunked.metrics.total_loss.shape == (population.num_runs, CONFIG.num_updates)
    # `jit(vmap(train))` compiles init and updates into one program, where XLA may round a
    # few results differently (layouts): equal to float32 rounding.
    fused = jax.jit(jax.vmap(trainer))(population.keys, population.hyperparams)
    chex.assert_trees_all_close(fused.state.params, chunked.state.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(fused.metrics, chunked.metrics, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_one_run_chunked_equals_the_vmapped_train(trainer):
    """A single run, whose init and chunk programs are traced without vmap on the CPU, trains
    in chunks (3, 3, 1) as the vmapped single call does, to float32 rounding."""
    one = build_population(Hyperparams(), seed=5, num_seeds=1)
    chunked = train_chunked(trainer, one, 3)
    assert chunked.metrics.total_loss.shape == (1, CONFIG.num_updates)
    vmapped = jax.jit(jax.vmap(trainer))(one.keys, one.hyperparams)
    # The two programs round differently, and 7 updates grow those differences to ~1e-5.
    chex.assert_trees_all_close(vmapped.state.params, chunked.state.params, rtol=1e-4, atol=3e-5)
    chex.assert_trees_all_close(vmapped.metrics, chunked.metrics, rtol=1e-4, atol=3e-5)


@pytest.mark.slow
def test_stop_save_restore_resume_is_bit_identical(
    trainer, population, uninterrupted, program2, tmp_path
):
    seen = []

    def on_chunk(run, done):
        seen.append(done.updates_done)
        assert done.chunk_metrics.total_loss.shape == (population.num_runs, 2)

    stopped = run_chunked(
        program2, population, on_chunk=on_chunk, stop_requested=lambda: len(seen) == 2
    )
    assert stopped.stopped and stopped.updates_done == 4 and seen == [2, 4]
    meta = {"updates_done": stopped.updates_done, "env": CONFIG.env}
    save_checkpoint(open_manager(tmp_path), stopped.state, stopped.metrics, meta)
    del stopped

    restored = restore_checkpoint(
        tmp_path, abstract_train_state(trainer, population), population.num_runs
    )
    assert restored.updates_done == 4 and restored.meta["env"] == CONFIG.env
    resumed = train_chunked(trainer, population, 2, resume=(restored.state, restored.metrics, 4))
    assert resumed.updates_done == CONFIG.num_updates
    assert_bit_identical(
        (resumed.state, resumed.metrics), (uninterrupted.state, uninterrupted.metrics)
    )


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


def test_signal_stops_at_the_next_chunk_boundary(population, program2):
    def on_chunk(run, done):
        if done.updates_done == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with StopOnSignals() as stop:
        run = run_chunked(program2, population, on_chunk=on_chunk, stop_requested=stop.requested)
    assert stop.signal_number == signal.SIGTERM
    assert run.stopped and run.updates_done == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


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
