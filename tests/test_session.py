"""The training session: the fit check comes before anything grows with the population;
hooks see every chunk in order; a session stopped by its hooks' checkpoint and resumed is
bit-identical to an uninterrupted run; a checkpoint of other runs is refused."""

import pytest
from small_runs import CONFIG, assert_bit_identical

import purejaxppo.runs.population
from purejaxppo import ConfigError, Hyperparams, LoopOptions, RunSpec, TrainSession
from purejaxppo.outputs.checkpoint import CheckpointError
from purejaxppo.outputs.hooks import CheckpointHook, EvalHook, ProgressHook, default_hooks
from purejaxppo.outputs.logs import MetricsCsv

SPEC = RunSpec("small", CONFIG, Hyperparams(), seed=3, num_seeds=2, sweep={"clip_eps": [0.1, 0.3]})


class Recorder:
    """A hook that records what it is shown."""

    def __init__(self):
        self.calls = []

    def on_start(self, session):
        self.calls.append(("start", session.updates_done))

    def on_chunk(self, session, report):
        self.calls.append(
            ("chunk", report.chunks_done, report.first_update, report.done.updates_done)
        )

    def close(self, session, run):
        self.calls.append(("close", None if run is None else run.updates_done))


def test_a_huge_population_is_refused_before_it_is_built(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the population was built before the fit check")

    monkeypatch.setattr(purejaxppo.runs.population, "build_population", never)
    spec = RunSpec("huge", CONFIG.replace(num_envs=64, total_timesteps=64 * 8 * 3), num_seeds=10**8)
    with pytest.raises(ConfigError, match=r"100000000 run\(s\) x 64 envs .* GiB"):
        TrainSession.open(spec)


def test_hooks_see_every_chunk_in_order_and_the_run_matches_uninterrupted(uninterrupted):
    session = TrainSession.open(SPEC, LoopOptions(chunk_updates=3))
    recorder = Recorder()
    run = session.run([recorder])
    assert recorder.calls == [
        ("start", 0),
        ("chunk", 1, 0, 3),
        ("chunk", 2, 3, 6),
        ("chunk", 3, 6, 7),
        ("close", 7),
    ]
    assert_bit_identical((run.state, run.metrics), (uninterrupted.state, uninterrupted.metrics))


@pytest.mark.slow
def test_stopped_and_resumed_session_is_bit_identical(uninterrupted, tmp_path):
    loop = LoopOptions(chunk_updates=2, checkpoint_every=1, eval_every=2, eval_episodes=2)
    first = TrainSession.open(SPEC, loop, tmp_path)
    chunks = []

    def stop_after_two():
        return len(chunks) >= 2

    recorder = Recorder()
    recorder.on_chunk = lambda session, report: chunks.append(report.chunks_done)
    hooks = [EvalHook(2, 2), recorder, CheckpointHook(tmp_path, 1)]
    stopped = first.run(hooks, stop_after_two)
    assert stopped.stopped and stopped.updates_done == 4 and sorted(first.evaluations) == [4]

    resumed_session = TrainSession.open(SPEC, loop, tmp_path, resume=True)
    assert resumed_session.updates_done == 4 and sorted(resumed_session.evaluations) == [4]
    resumed = resumed_session.run()
    assert resumed.updates_done == CONFIG.num_updates
    assert_bit_identical(
        (resumed.state, resumed.metrics), (uninterrupted.state, uninterrupted.metrics)
    )
    with pytest.raises(ConfigError, match="already holds a checkpointed run"):
        TrainSession.open(SPEC, loop, tmp_path)
    other = RunSpec("small", CONFIG, Hyperparams(), seed=4, num_seeds=2, sweep=SPEC.sweep)
    with pytest.raises(CheckpointError, match="is of other runs than this session's"):
        TrainSession.open(other, loop, tmp_path, resume=True)


def test_default_hooks_decide_once_who_writes(tmp_path):
    session = TrainSession.open(SPEC, LoopOptions(chunk_updates=7, eval_every=1))
    writer = [type(h) for h in default_hooks(session, tmp_path, writes=True)]
    assert writer[:3] == [EvalHook, MetricsCsv, ProgressHook] and writer[3] is CheckpointHook
    others = [type(h) for h in default_hooks(session, tmp_path / "other", writes=False)]
    assert others == [EvalHook, CheckpointHook]  # both collective over a mesh
    assert not (tmp_path / "other").exists()
    without_out = [type(h) for h in default_hooks(session, None, writes=True)]
    assert without_out == [EvalHook, ProgressHook]


def test_chunk_updates_beyond_the_run_are_refused():
    with pytest.raises(ConfigError, match="chunk_updates = 8 is more than the run's 7 updates"):
        TrainSession.open(SPEC, LoopOptions(chunk_updates=8))
