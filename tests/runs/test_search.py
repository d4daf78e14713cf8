"""Searched hyperparameters: drawn in range, with the right distribution, the same for the
same seed, crossed with a sweep, saved and read back, and bad ranges refused by name."""

import jax
import numpy as np
import pytest
from small_runs import CONFIG

from purejaxppo import ConfigError, Hyperparams, RunSpec
from purejaxppo.runs.document import read_run_document, run_document
from purejaxppo.runs.pbt_settings import PBTConfig
from purejaxppo.runs.population import build_population, population_of
from purejaxppo.runs.search import SearchRange, draw_search, parse_search_range
from purejaxppo.runs.spec import LoopOptions

LR = SearchRange("log", 1e-5, 3e-2)


def ks_distance(samples: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of `samples` in [0, 1] from the uniform distribution."""
    x = np.sort(samples)
    n = len(x)
    above = np.arange(1, n + 1) / n - x
    below = x - np.arange(n) / n
    return float(max(above.max(), below.max()))


@pytest.mark.parametrize("kind", ["log", "uniform"])
def test_draws_lie_in_range_and_follow_their_distribution(kind):
    search_range = SearchRange(kind, 1e-4, 1e-1)
    n = 20_000
    values = draw_search({"learning_rate": search_range}, seed=7, num_seeds=n)["learning_rate"]
    assert values.shape == (n,) and values.dtype == np.float32
    assert values.min() >= np.float32(1e-4) and values.max() <= np.float32(1e-1)
    low, high = np.log(1e-4), np.log(1e-1)
    v = values.astype(np.float64)
    unit = (np.log(v) - low) / (high - low) if kind == "log" else (v - 1e-4) / (1e-1 - 1e-4)
    # The KS distance's 0.1% critical value is 1.95 / sqrt(n): a wrong law (a log range
    # drawn uniformly puts ~90% of its mass in the top decade) fails by far.
    assert ks_distance(unit) < 1.95 / np.sqrt(n)
    np.testing.assert_allclose(np.quantile(unit, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.02)
    if kind == "log":  # half of the draws below the geometric midpoint, not the arithmetic one
        assert abs(np.mean(v < np.sqrt(1e-4 * 1e-1)) - 0.5) < 0.02


def test_same_seed_same_values_and_names_draw_independently():
    both = {"learning_rate": LR, "ent_coef": SearchRange("uniform", 0.0, 0.05)}
    first = draw_search(both, seed=3, num_seeds=8)
    again = draw_search(both, seed=3, num_seeds=8)
    for name in both:
        np.testing.assert_array_equal(first[name], again[name])
    alone = draw_search({"learning_rate": LR}, seed=3, num_seeds=8)
    np.testing.assert_array_equal(alone["learning_rate"], first["learning_rate"])
    other = draw_search(both, seed=4, num_seeds=8)
    assert not np.array_equal(other["learning_rate"], first["learning_rate"])
    assert len(set(first["learning_rate"].tolist())) == 8  # every run its own value


def test_search_crossed_with_a_sweep_shares_the_drawn_values():
    population = build_population(
        Hyperparams(),
        seed=5,
        num_seeds=3,
        sweep={"clip_eps": [0.1, 0.3]},
        search={"learning_rate": LR},
    )
    assert population.num_runs == 6
    lr = np.asarray(population.hyperparams.learning_rate)
    clip = np.asarray(population.hyperparams.clip_eps)
    np.testing.assert_array_equal(lr[:3], lr[3:])  # each setting, the same searched values
    np.testing.assert_allclose(clip, np.float32([0.1] * 3 + [0.3] * 3))
    drawn = draw_search({"learning_rate": LR}, 5, 3)["learning_rate"]
    np.testing.assert_array_equal(lr[:3], drawn)
    assert [s["learning_rate"] for s in population.searched] == [float(v) for v in lr]
    assert population.seeds == (5, 6, 7, 5, 6, 7)


def test_a_searched_population_compiles_once(trainer):
    from purejaxppo.runs.population import train_population

    population = build_population(Hyperparams(), seed=0, num_seeds=4, search={"learning_rate": LR})
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: (
            compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    output, _ = train_population(trainer, population)
    assert compiles.count("/jax/core/compile/backend_compile_duration") == 1
    # Each run trained with its own drawn learning rate (the metric records the schedule's).
    np.testing.assert_allclose(
        np.asarray(output.metrics.learning_rate)[:, 0],
        population.hyperparams.learning_rate,
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("learning_rate", "log:0:1e-2", "a log range needs LOW > 0"),
        ("learning_rate", "log:1e-2:1e-3", "needs finite LOW < HIGH"),
        ("learning_rate", "uniform:1e-3:nan", "needs finite LOW < HIGH"),
        ("gamma", "uniform:0.9:1.5", r"gamma = 1.5 is out of range \[0, 1\]"),
        ("learning_rate", "normal:1e-3:1e-2", "expected log:LOW:HIGH or uniform:LOW:HIGH"),
        ("learning_rate", "log:1e-3", "expected log:LOW:HIGH"),
        ("learning_rate", "log:a:1", "LOW and HIGH must be numbers"),
        ("num_envs", "log:1:8", "cannot search 'num_envs': it is static"),
    ],
)
def test_bad_ranges_are_refused_by_name(name, text, message):
    with pytest.raises(ConfigError, match=message):
        RunSpec("x", CONFIG, search={name: parse_search_range(name, text)})


def test_swept_and_searched_at_once_is_refused():
    with pytest.raises(ConfigError, match="learning_rate is both swept and searched"):
        RunSpec("x", CONFIG, sweep={"learning_rate": (1e-3,)}, search={"learning_rate": LR})


def test_the_run_document_keeps_search_and_pbt():
    spec = RunSpec(
        "x",
        CONFIG,
        num_seeds=8,
        search={"learning_rate": LR, "ent_coef": SearchRange("uniform", 0.0, 0.05)},
        strategy=PBTConfig(every=2, fraction=0.25, perturb=(0.5, 2.0)),
    )
    document = run_document(spec, LoopOptions())
    read, _ = read_run_document(document, "doc")
    assert read == spec
    assert population_of(read).searched == population_of(spec).searched
    with pytest.raises(ConfigError, match="doc: unknown pbt field"):
        read_run_document(document | {"pbt": {"every": 2, "often": 1}}, "doc")
