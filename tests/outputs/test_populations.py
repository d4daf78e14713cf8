"""The population report: health flags on made-up curves (each raised by its own
instability, none by a healthy run), a lineage traced through hand-made PBT steps, and the
best run's schedule."""

import numpy as np
import pytest

from purejaxppo import Hyperparams, PPOConfig
from purejaxppo.outputs.populations import best_run, lineage, run_health
from purejaxppo.ppo.types import Metrics
from purejaxppo.runs.pbt import PBTLog
from purejaxppo.runs.population import build_population
from purejaxppo.runs.search import SearchRange

U = 100


def healthy_metrics() -> dict[str, np.ndarray]:
    """One run's metrics `[1, U]`: returns rising, entropy falling gently, small KL."""
    t = np.linspace(0, 1, U)
    fields = {name: np.zeros((1, U), np.float32) for name in Metrics._fields}
    fields |= {
        "episode_return": (20 + 400 * t)[None],
        "episodes": np.full((1, U), 4, np.int32),
        "total_loss": np.ones((1, U)),
        "value_loss": (10 + 5 * np.sin(10 * t))[None],
        "entropy": (0.69 - 0.3 * t)[None],
        "approx_kl": np.full((1, U), 0.01),
    }
    return fields


def health(**changes) -> list[str]:
    return run_health(Metrics(**(healthy_metrics() | changes)), 0, 0.02, PPOConfig())


def test_a_healthy_run_raises_no_flag():
    assert health() == []


def test_each_instability_raises_its_flag():
    loss = np.ones((1, U))
    loss[0, 50] = np.nan
    assert health(total_loss=loss) == ["nan"]
    kl = np.full((1, U), 0.01)
    kl[0, :15] = 0.5  # 15% of the updates over 0.1 (the bound without the target-KL stop)
    assert health(approx_kl=kl) == ["kl"]
    kl[0, :15], kl[0, :5] = 0.01, 0.5  # 5%: not flagged
    assert health(approx_kl=kl) == []
    entropy = np.linspace(0.69, 0.01, U)[None]  # to 1.4% of its start
    falling = np.concatenate([np.linspace(20, 400, U // 2), np.linspace(400, 100, U // 2)])[None]
    assert health(entropy=entropy, episode_return=falling) == ["entropy_collapse"]
    assert health(entropy=entropy) == []  # collapsed at its best return: converged, not stuck
    value = np.full((1, U), 10.0)
    value[0, -10:] = 5e3
    assert health(value_loss=value) == ["value_divergence"]


def test_the_kl_bound_follows_target_kl_when_its_stop_is_on():
    kl = np.full((1, U), 0.09)  # over 4 x 0.02 = 0.08, under 0.1
    metrics = Metrics(**(healthy_metrics() | {"approx_kl": kl}))
    assert run_health(metrics, 0, 0.02, PPOConfig(target_kl_stop=True)) == ["kl"]
    assert run_health(metrics, 0, 0.02, PPOConfig()) == []


def made_up_log() -> PBTLog:
    """4 runs, 2 steps (updates 10, 20): at 10 run 3 copies run 0; at 20 run 0 copies run 3."""
    parents = np.array([[0, 1, 2, 0], [3, 1, 2, 3]], np.int32)
    lr = np.array([[1e-3, 2e-3, 3e-3, 8e-4], [1e-3 * 1.25 * 0.8, 2e-3, 3e-3, 8e-4]], np.float32)
    lr[1, 0] = 1e-3  # run 0 after step 2: run 3's 8e-4 x 1.25
    hps = Hyperparams(**{name: np.zeros((2, 4), np.float32) for name in Hyperparams().to_dict()})
    return PBTLog(
        update=np.array([10, 20], np.int32),
        fitness=np.zeros((2, 4), np.float32),
        parents=parents,
        replaced=parents != np.arange(4),
        hyperparams=hps.replace(learning_rate=lr),
        active=np.ones(2, bool),
    )


def test_lineage_follows_the_parents_back_through_the_steps():
    log = made_up_log()
    assert lineage(log, 0) == [0, 3, 0]  # run 0's params: run 0, then run 3 (a copy), then 0
    assert lineage(log, 1) == [1, 1, 1]
    assert lineage(log, 3) == [0, 3, 3]


def test_best_run_carries_its_lineage_and_schedule():
    search = {"learning_rate": SearchRange("log", 1e-4, 1e-2)}
    population = build_population(Hyperparams(), seed=0, num_seeds=4, search=search)
    fields = healthy_metrics()
    metrics = Metrics(**{k: np.repeat(v, 4, axis=0) for k, v in fields.items()})
    metrics = metrics._replace(episode_return=metrics.episode_return * np.arange(1, 5)[::-1, None])
    best = best_run(population, metrics, made_up_log(), ("learning_rate",))  # run 0 is best
    assert best["run"] == 0 and best["lineage"] == [0, 3, 0]
    assert [entry["from_update"] for entry in best["changes"]] == [0, 10, 20]
    assert [entry["run"] for entry in best["changes"]] == [0, 3, 0]
    lrs = [entry["learning_rate"] for entry in best["changes"]]
    assert lrs[0] == population.searched[0]["learning_rate"]
    assert lrs[1:] == pytest.approx([8e-4, 1e-3])  # run 3's after step 1, run 0's after step 2
    assert best["hyperparams"] == {"learning_rate": lrs[-1]}
    without = best_run(population, metrics, None, ("learning_rate",))
    assert "lineage" not in without and without["run"] == 0


def test_sweep_plot_draws_a_heatmap_for_a_two_way_grid_and_panels_otherwise(tmp_path):
    from purejaxppo.outputs.plots import plot_sweep

    lr = np.repeat([1e-4, 1e-3, 1e-2], 4)
    clip = np.tile([0.1, 0.2, 0.3, 0.4], 3)
    finals = -((np.log10(lr) + 3) ** 2) + clip
    finals[0] = np.nan  # a run without a finished episode is left out of its cell
    plot_sweep(tmp_path / "grid.png", {"learning_rate": lr, "clip_eps": clip}, finals, grid=True)
    both = {"learning_rate": lr * 1.3, "clip_eps": clip}
    plot_sweep(tmp_path / "search.png", both, finals, grid=False)
    for name in ("grid.png", "search.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    import matplotlib.image

    grid, panels = (matplotlib.image.imread(tmp_path / n) for n in ("grid.png", "search.png"))
    assert grid.shape[1] == 720 and panels.shape[1] == 1008  # one 6" heatmap; two 4.2" panels
