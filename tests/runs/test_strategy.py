"""The population-strategy seam: the chunk loop runs a strategy it has never heard of (its
carry, its log and its checkpoint form opaque), stopped and resumed through that form equals
uninterrupted; and the generic modules never name population-based training."""

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from small_runs import CONFIG, assert_bit_identical

from purejaxppo.runs.chunked import (
    ResumePoint,
    carried_on_host,
    compile_chunked,
    run_chunked,
    unpadded_state,
)
from purejaxppo.runs.independent import IndependentRuns
from purejaxppo.runs.strategy import Carried

PACKAGE = Path(__file__).resolve().parents[2] / "purejaxppo"


class CountingStrategy:
    """A third strategy, written here alone: independent updates, and a carry `[R]` that
    counts each run's chunks, logged once per chunk (`[1, R]`) and kept in checkpoints."""

    def compile_chunk(self, trainer, placement, num_runs, size, example_args):
        plain, seconds = IndependentRuns().compile_chunk(
            trainer, placement, num_runs, size, example_args
        )

        def chunk(state, hps, carry):
            state, hps, _, metrics, _ = plain(state, hps, None)
            carry = carry + jnp.int32(1)
            return state, hps, carry, metrics, carry[None]

        return chunk, seconds

    def initial_carry(self, num_runs):
        return np.zeros(num_runs, np.int32)

    def log_to_host(self, placement, log, num_runs):
        return np.asarray(placement.to_host(log))[:, :num_runs]

    def to_checkpoint(self, carried):
        return {"count": np.asarray(carried.carry), "log": np.asarray(carried.log)}

    def abstract_checkpoint(self, num_runs, updates_done, num_updates):
        return None  # what `to_checkpoint` gives is read back as it is in this test

    def from_checkpoint(self, tree):
        return Carried(None, tree["count"], tree["log"])


def test_the_chunk_loop_runs_a_strategy_it_does_not_know(trainer, population, uninterrupted):
    assert CONFIG.num_updates == 7  # chunks of 2, 2, 2, 1
    runs, strategy = population.num_runs, CountingStrategy()
    program = compile_chunked(trainer, population, 2, strategy=strategy)
    whole = run_chunked(program, population)
    assert np.asarray(whole.carry).tolist() == [4] * runs
    assert np.asarray(whole.log).tolist() == [[k] * runs for k in (1, 2, 3, 4)]
    # Its updates are the independent runs' own (one chunk of 7 is the same, bit for bit).
    assert_bit_identical((whole.state, whole.metrics), (uninterrupted.state, uninterrupted.metrics))

    calls = iter([0, 0, 1])  # stop before the third chunk
    stopped = run_chunked(program, population, stop_requested=lambda: next(calls))
    assert stopped.stopped and stopped.updates_done == 4
    saved = strategy.to_checkpoint(carried_on_host(program.placement, stopped, runs))
    state = unpadded_state(program.placement, stopped.state, runs)
    resume = ResumePoint(state, stopped.metrics, 4, strategy.from_checkpoint(saved))
    resumed = run_chunked(program, population, resume=resume)
    assert_bit_identical(
        (resumed.state, resumed.metrics, resumed.carry, resumed.log),
        (whole.state, whole.metrics, whole.carry, whole.log),
    )


def test_the_generic_modules_never_name_population_based_training():
    """Only PBT's own modules, its flags and its outputs know it; the chunk loop, the
    session, the checkpoints and the run's description hold an opaque strategy."""
    generic = [
        "runs/chunked.py", "runs/strategy.py", "runs/independent.py", "runs/spec.py",
        "runs/document.py", "runs/population.py", "runs/compile.py", "runs/placement.py",
        "runs/changes.py", "runs/search.py", "session.py", "outputs/checkpoint.py",
        "cli/export.py",
    ]  # fmt: skip
    named = [name for name in generic if re.search("pbt", (PACKAGE / name).read_text(), re.I)]
    assert not named, named
    pbt_aware = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search("pbt", path.read_text(), re.I)
    }
    own = {p for p in pbt_aware if Path(p).name.startswith("pbt")}
    assert own == {"runs/pbt.py", "runs/pbt_settings.py", "runs/pbt_step.py", "runs/pbt_replay.py"}
    flags_and_outputs = {
        "runs/strategies.py", "cli/main.py", "cli/parser.py", "cli/train.py", "cli/values.py",
        "outputs/hooks.py", "outputs/plots.py", "outputs/populations.py", "outputs/summary.py",
    }  # fmt: skip
    assert pbt_aware - own <= flags_and_outputs, sorted(pbt_aware - own - flags_and_outputs)
