"""The chunked host loop: chunked == unchunked, a stopped and resumed run (through a
checkpoint) is bit-identical to an uninterrupted one, signals stop at a chunk boundary."""

import math
import os
import signal

import chex
import jax
import pytest
from small_runs import CONFIG, assert_bit_identical, run_in_chunks
from suite_helpers import jit_fast

from purejaxppo import Hyperparams
from purejaxppo.outputs.checkpoint import (
    open_manager,
    restore_checkpoint,
    save_checkpoint,
)
from purejaxppo.runs.chunked import (
    abstract_train_state,
    chunk_sizes,
    default_chunk_updates,
    run_chunked,
)
from purejaxppo.runs.population import build_population
from purejaxppo.runs.stop import StopOnSignals


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
def test_chunked_equals_one_chunk_and_the_fused_train(trainer, population, uninterrupted, program2):
    chunked = run_chunked(program2, population)  # chunks of 2, 2, 2, 1 (compiled once)
    assert chunked.updates_done == CONFIG.num_updates and not chunked.stopped
    assert_bit_identical(
        (chunked.state.params, chunked.metrics),
        (uninterrupted.state.params, uninterrupted.metrics),
    )
    assert chunked.metrics.total_loss.shape == (population.num_runs, CONFIG.num_updates)
    # `jit(vmap(train))` compiles init and updates into one program, where XLA may round a
    # few results differently (layouts): equal to float32 rounding.
    fused = jit_fast(jax.vmap(trainer))(population.keys, population.hyperparams)
    chex.assert_trees_all_close(fused.state.params, chunked.state.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(fused.metrics, chunked.metrics, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_one_run_chunked_equals_the_vmapped_train(trainer):
    """A single run, whose init and chunk programs are traced without vmap on the CPU, trains
    in chunks (7 of 1 update: one chunk program to compile) as the vmapped single call does,
    to float32 rounding."""
    one = build_population(Hyperparams(), seed=5, num_seeds=1)
    chunked = run_in_chunks(trainer, one, 1)
    assert chunked.metrics.total_loss.shape == (1, CONFIG.num_updates)
    vmapped = jit_fast(jax.vmap(trainer))(one.keys, one.hyperparams)
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
    resumed = run_in_chunks(trainer, population, 2, resume=(restored.state, restored.metrics, 4))
    assert resumed.updates_done == CONFIG.num_updates
    assert_bit_identical(
        (resumed.state, resumed.metrics), (uninterrupted.state, uninterrupted.metrics)
    )


def test_signal_stops_at_the_next_chunk_boundary(population, program2):
    def on_chunk(run, done):
        if done.updates_done == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with StopOnSignals() as stop:
        run = run_chunked(program2, population, on_chunk=on_chunk, stop_requested=stop.requested)
    assert stop.signal_number == signal.SIGTERM
    assert run.stopped and run.updates_done == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
