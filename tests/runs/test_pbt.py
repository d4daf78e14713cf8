"""Population-based training: the pure exploit-and-explore step on hand-made fitness, an
analytic task whose best value is known, and the compiled chunks (stopped and resumed equals
uninterrupted, bit for bit; the PBT log and the files it writes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from small_runs import CONFIG, assert_bit_identical
from suite_helpers import jit_fast

from purejaxppo import ConfigError, Hyperparams, LoopOptions, RunSpec, TrainSession
from purejaxppo.runs.pbt_settings import PBTConfig
from purejaxppo.runs.pbt_step import choose_parents, exploit_and_explore, rank_runs
from purejaxppo.runs.population import build_population
from purejaxppo.runs.search import SearchRange

PBT = PBTConfig(every=2, fraction=0.25, perturb=(0.8, 1.25))
LR_RANGE = SearchRange("log", 1e-5, 3e-2)
BOUNDS = (("learning_rate", 1e-5, 3e-2),)
FITNESS = jnp.asarray([5.0, 1.0, 7.0, 3.0, 0.0, 6.0, 2.0, 4.0])  # top 2: runs 2, 5; bottom: 4, 1
# Jitted once, as the chunks run it (called eagerly, each of its ops would compile on its own).
exploit = jit_fast(exploit_and_explore, static_argnums=(0, 1), static_argnames="num_runs")


@pytest.fixture(scope="module")
def population8():
    return build_population(Hyperparams(), seed=0, num_seeds=8, search={"learning_rate": LR_RANGE})


@pytest.fixture(scope="module")
def state8(trainer, population8):
    """Eight runs' states after init, their params made distinct per run."""
    return jit_fast(jax.vmap(trainer.init))(population8.keys, population8.hyperparams)


def run_leaves(tree, run):
    return [np.asarray(leaf)[run] for leaf in jax.tree.leaves(jax.tree.map(_data, tree))]


def _data(x):
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def test_exactly_the_bottom_fraction_copies_the_top(state8, population8):
    hps = jax.tree.map(jnp.asarray, population8.hyperparams)
    out = exploit(PBT, BOUNDS, FITNESS, state8, hps, jax.random.key(1))
    replaced = np.asarray(out.replaced)
    parents = np.asarray(out.parents)
    assert replaced.tolist() == [r in (1, 4) for r in range(8)]
    assert set(parents[[1, 4]]) <= {2, 5}
    assert parents[~replaced].tolist() == [r for r in range(8) if r not in (1, 4)]
    for run in range(8):
        parent = parents[run]
        # What is copied equals the parent's; what stays its own equals its own.
        copied = (state8.params, state8.opt_state, state8.norm.obs, state8.norm.ret)
        new = (out.state.params, out.state.opt_state, out.state.norm.obs, out.state.norm.ret)
        for a, b in zip(run_leaves(new, run), run_leaves(copied, parent), strict=True):
            np.testing.assert_array_equal(a, b)
        own_new = (
            out.state.runner,
            out.state.key,
            out.state.update,
            out.state.norm.discounted_return,
        )
        own_old = (state8.runner, state8.key, state8.update, state8.norm.discounted_return)
        for a, b in zip(run_leaves(own_new, run), run_leaves(own_old, run), strict=True):
            np.testing.assert_array_equal(a, b)
        if not replaced[run]:  # untouched, bit for bit, hyperparameters included
            assert_bit_identical(
                jax.tree.map(lambda x, r=run: x[r], (out.state, out.hyperparams)),
                jax.tree.map(lambda x, r=run: x[r], (state8, hps)),
            )
    lr_old, lr_new = np.asarray(hps.learning_rate), np.asarray(out.hyperparams.learning_rate)
    for run in (1, 4):
        ratio = lr_new[run] / lr_old[parents[run]]
        clipped = lr_new[run] in (np.float32(1e-5), np.float32(3e-2))
        assert clipped or np.isclose(ratio, 0.8, rtol=1e-6) or np.isclose(ratio, 1.25, rtol=1e-6)
        assert np.float32(1e-5) <= lr_new[run] <= np.float32(3e-2)
        # Hyperparameters not searched are the parent's.
        assert out.hyperparams.clip_eps[run] == hps.clip_eps[parents[run]]


def test_padding_rows_continue_themselves_and_change_nothing(state8, population8):
    """The step the compiled chunks run over a padded run axis: with `num_runs` = 6 of 8
    rows, the first 6 come out as a step on those 6 alone; rows 6 and 7 stay as they were."""
    hps, key = population8.hyperparams, jax.random.key(4)
    first6 = jax.tree.map(lambda leaf: leaf[:6], (state8, hps))
    alone = exploit(PBT, BOUNDS, FITNESS[:6], *first6, key)
    padded = exploit(PBT, BOUNDS, FITNESS, state8, hps, key, num_runs=6)
    assert np.asarray(padded.parents).tolist() == [*np.asarray(alone.parents).tolist(), 6, 7]
    assert np.asarray(padded.replaced).tolist() == [*np.asarray(alone.replaced).tolist(), 0, 0]
    assert_bit_identical(
        jax.tree.map(lambda leaf: leaf[:6], (padded.state, padded.hyperparams)),
        (alone.state, alone.hyperparams),
    )
    assert_bit_identical(
        jax.tree.map(lambda leaf: leaf[6:], (padded.state, padded.hyperparams)),
        jax.tree.map(lambda leaf: leaf[6:], (state8, hps)),
    )


def test_perturbations_are_clipped_to_the_search_range(state8, population8):
    hps = population8.hyperparams.replace(learning_rate=jnp.full(8, 2e-2, jnp.float32))
    pbt = PBTConfig(every=2, fraction=0.5, perturb=(1.5, 2.0))  # 3e-2 or 4e-2: over the top
    out = exploit(pbt, BOUNDS, FITNESS, state8, hps, jax.random.key(2))
    lr, replaced = np.asarray(out.hyperparams.learning_rate), np.asarray(out.replaced)
    np.testing.assert_array_equal(lr[replaced], np.float32(3e-2))  # perturbed, then clipped
    np.testing.assert_array_equal(lr[~replaced], np.float32(2e-2))
    assert replaced.sum() == 4


def test_ties_and_nan_are_ranked_deterministically():
    assert rank_runs(jnp.zeros(6)).tolist() == [0, 1, 2, 3, 4, 5]
    assert rank_runs(jnp.asarray([1.0, jnp.nan, 1.0, 2.0])).tolist() == [3, 0, 2, 1]
    parents, replaced = choose_parents(
        PBTConfig(every=1, fraction=0.5), jnp.zeros(4), jax.random.key(0)
    )
    assert np.asarray(replaced).tolist() == [False, False, True, True]  # ties: higher index lower
    assert set(np.asarray(parents)[2:]) <= {0, 1}


def test_same_key_same_bits_and_keys_matter(state8, population8):
    hps = population8.hyperparams
    first = exploit(PBT, BOUNDS, FITNESS, state8, hps, jax.random.key(3))
    again = exploit(PBT, BOUNDS, FITNESS, state8, hps, jax.random.key(3))
    assert_bit_identical(first, again)
    draws = set()
    for k in range(6):
        out = exploit(PBT, BOUNDS, FITNESS, state8, hps, jax.random.key(k))
        draws.add(tuple(np.asarray(out.hyperparams.learning_rate).tolist()))
    assert len(draws) > 1


def test_analytic_task_moves_the_population_to_the_known_best(state8):
    """Fitness -(log10 lr + 3)^2 has its best at lr = 1e-3; 40 steps of exploit and explore
    from log-uniform draws over [1e-5, 3e-2] bring the population's median within a factor
    of 2 of it and shrink its spread, while a fitness that ignores lr does not move it."""
    population = build_population(
        Hyperparams(), seed=1, num_seeds=32, search={"learning_rate": LR_RANGE}
    )
    state = jax.vmap(lambda _: jax.tree.map(lambda x: x[0], state8))(jnp.arange(32))
    step = jax.jit(
        lambda hps, key, fitness: (
            exploit_and_explore(PBT, BOUNDS, fitness, state, hps, key).hyperparams
        )
    )
    hps = population.hyperparams
    start = np.log10(np.asarray(hps.learning_rate))
    for k in range(40):
        fitness = -((jnp.log10(hps.learning_rate) + 3.0) ** 2)
        hps = step(hps, jax.random.key(k), fitness)
    end = np.log10(np.asarray(hps.learning_rate))
    assert abs(np.median(end) + 3.0) < np.log10(2.0), np.median(end)
    assert np.mean(np.abs(end + 3.0)) < 0.5 * np.mean(np.abs(start + 3.0))


def pbt_spec(num_updates=6):
    config = CONFIG.replace(total_timesteps=CONFIG.batch_size * num_updates)
    return RunSpec(
        "pbt", config, seed=0, num_seeds=4, search={"learning_rate": LR_RANGE},
        strategy=PBTConfig(every=1, fraction=0.25),
    )  # fmt: skip


def test_pbt_chunks_run_the_steps_and_resume_bit_identically(tmp_path):
    from purejaxppo.outputs.hooks import CheckpointHook

    spec = pbt_spec()
    whole = TrainSession.open(spec, LoopOptions(chunk_updates=2)).run()
    log = whole.log
    assert log.update.tolist() == [1, 2, 3, 4, 5]  # after every update but the last
    assert log.parents.shape == (5, 4) and log.replaced.sum(axis=1).tolist() == [1] * 5
    lr = np.asarray(log.hyperparams.learning_rate)
    assert np.all((lr >= np.float32(1e-5)) & (lr <= np.float32(3e-2)))
    # The metrics record the learning rate each run used (linearly annealed from its
    # current value at the run's own update count): after a step, the new value.
    used = np.asarray(whole.metrics.learning_rate)
    annealed = lr.T * (1 - np.arange(1, 6) / 6)
    np.testing.assert_allclose(used[:, 1:], annealed, rtol=1e-5)

    stopping = TrainSession.open(spec, LoopOptions(chunk_updates=2, checkpoint_every=1), tmp_path)
    calls = iter([False, False, True])
    stopped = stopping.run([CheckpointHook(tmp_path, 1)], stop_requested=lambda: next(calls))
    assert stopped.stopped and stopped.updates_done == 4
    resumed_session = TrainSession.open(spec, LoopOptions(chunk_updates=2), tmp_path, resume=True)
    resumed = resumed_session.run()
    assert_bit_identical(
        (resumed.state, resumed.metrics, resumed.hyperparams, resumed.log),
        (whole.state, whole.metrics, whole.hyperparams, whole.log),
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"search": {}}, "pbt every = 1: PBT evolves the searched hyperparameters"),
        ({"num_seeds": 3}, r"pbt fraction = 0.25 of 3 runs replaces none: train at least 4"),
        ({"sweep": {"clip_eps": (0.1, 0.2)}}, "a swept grid would not stay a grid"),
        ({"strategy": PBTConfig(every=6)}, "pbt every = 6 updates, but the run has 6"),
    ],
)
def test_impossible_pbt_settings_are_refused(changes, message):
    import dataclasses

    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(pbt_spec(), **changes)


def test_chunks_must_hold_whole_pbt_steps():
    import dataclasses

    spec = dataclasses.replace(pbt_spec(), strategy=PBTConfig(every=2))
    with pytest.raises(ConfigError, match="chunk_updates = 3 must be a multiple of pbt every = 2"):
        TrainSession.open(spec, LoopOptions(chunk_updates=3))
    assert TrainSession.open(spec).loop.chunk_updates % 2 == 0


def test_eval_fitness_ranks_by_deterministic_episodes_inside_the_chunk():
    import dataclasses

    pbt = PBTConfig(every=2, fitness="eval", eval_episodes=4)
    spec = dataclasses.replace(pbt_spec(), strategy=pbt)
    run = TrainSession.open(spec, LoopOptions(chunk_updates=2)).run()
    fitness = np.asarray(run.log.fitness)
    assert run.log.update.tolist() == [2, 4]
    # The mean of 4 CartPole episodes (whole returns from 8 to 500; the time limit of 500
    # steps ends every one): in [8, 500], a multiple of 1/4.
    assert np.all((fitness >= 8) & (fitness <= 500)), fitness
    np.testing.assert_array_equal(fitness * 4, np.round(fitness * 4))
    assert run.log.replaced.sum(axis=1).tolist() == [1, 1]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            ((3, {"clip_eps": 0.1}), (2, {"clip_eps": 0.3})),
            "change at update 2: the update must be .* after 3",
        ),
        (((6, {"clip_eps": 0.1}),), "before the run's 6 updates"),
        (((2, {"learning_rate": 1e-3}),), "'learning_rate' is not a traced hyperparameter left"),
        (((2, {"num_envs": 8}),), "'num_envs' is not a traced hyperparameter"),
        (((2, {"gamma": 2.0}),), r"gamma = 2 is out of range"),
        (((2, {}),), r"give \{name: value\}"),
    ],
)
def test_bad_schedules_are_refused(schedule, message):
    import dataclasses

    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(pbt_spec(), strategy=PBTConfig(), changes=schedule)


def test_a_schedule_changes_the_values_between_chunks():
    import dataclasses

    spec = dataclasses.replace(
        pbt_spec(),
        strategy=PBTConfig(),
        search={},
        changes=((2, {"clip_eps": 0.3}), (4, {"ent_coef": 0.0})),
    )
    assert TrainSession.open(spec).loop.chunk_updates == 1  # the default: 6 // 20, at least 1
    session = TrainSession.open(spec, LoopOptions(chunk_updates=2))
    with pytest.raises(
        ConfigError,
        match=r"chunk_updates = 3 must divide the updates of the hyperparameter changes",
    ):
        TrainSession.open(spec, LoopOptions(chunk_updates=3))
    run = session.run()
    clip = np.asarray(run.hyperparams.clip_eps)
    np.testing.assert_allclose(clip, 0.3)
    entropy_weight = np.asarray(run.metrics.ent_coef)
    assert np.all(entropy_weight[:, :4] > 0) and np.all(entropy_weight[:, 4:] == 0)
