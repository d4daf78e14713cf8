"""The trainer's programs are compiled with `trainer_compiler_options`, and those options
change no result (the optimised compile against XLA's defaults on a short run)."""

import chex
import jax
import pytest

from purejaxppo import Hyperparams, PPOConfig, compiling, make_train
from purejaxppo.config import stack_hyperparams
from purejaxppo.population import Population, train_population

CONFIG = PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 3)


def test_cpu_uses_llvm_level_1():
    assert jax.default_backend() == "cpu"
    assert compiling.trainer_compiler_options() == {"xla_backend_optimization_level": 1}
    options = compiling.trainer_compiler_options()
    options["extra"] = 1
    assert "extra" not in compiling.trainer_compiler_options()  # a fresh dict each call


def test_options_change_no_result():
    trainer = make_train(CONFIG)
    keys = jax.random.split(jax.random.key(0), 2)
    hps = stack_hyperparams([Hyperparams()] * 2)
    default = jax.jit(jax.vmap(trainer))(keys, hps)
    population = Population((0, 1), ({}, {}), keys, hps)
    optimised, _ = train_population(trainer, population)
    chex.assert_trees_all_close(optimised.metrics, default.metrics, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(optimised.state.params, default.state.params, rtol=1e-5, atol=1e-6)


def test_options_reach_the_compiler(monkeypatch):
    """An option XLA does not know makes the trainer's compile fail: they are passed on."""
    monkeypatch.setattr(compiling, "CPU_COMPILER_OPTIONS", {"xla_no_such_option": 1})
    trainer = make_train(CONFIG)
    keys = jax.random.split(jax.random.key(0), 1)
    population = Population((0,), ({},), keys, stack_hyperparams([Hyperparams()]))
    with pytest.raises(Exception, match="xla_no_such_option"):
        train_population(trainer, population)
