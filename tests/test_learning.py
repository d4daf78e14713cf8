"""Learning tests: presets reach their returns over several seeds in one compiled call."""

import numpy as np

from purejaxppo import make_train
from purejaxppo.population import build_population, final_returns, train_population
from purejaxppo.presets import PRESETS


def preset_final_returns(name: str, num_seeds: int) -> np.ndarray:
    config, hp = PRESETS[name]
    trainer = make_train(config)
    output, _ = train_population(trainer, build_population(hp, seed=0, num_seeds=num_seeds))
    assert np.all(np.isfinite(np.asarray(output.metrics.total_loss)))
    return final_returns(output.metrics)


def test_cartpole_preset_solves_over_four_seeds():
    finals = preset_final_returns("cartpole", num_seeds=4)
    assert finals.shape == (4,)
    assert np.mean(finals) >= 475, finals


def test_pendulum_preset_learns_to_swing_up():
    # A random policy scores about -1200 per 200-step episode; a policy that swings up and
    # balances from most starts scores above -400 (public PPO references: -130 to -170).
    finals = preset_final_returns("pendulum", num_seeds=4)
    assert np.mean(finals) >= -400, finals
    assert np.min(finals) >= -600, finals
