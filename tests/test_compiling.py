"""The trainer's programs are compiled with `trainer_compiler_options`, and those options
change no result (the optimised compile against XLA's defaults on a short run)."""

import chex
import jax
import pytest

from purejaxppo import Hyperparams, PPOConfig, bench, compiling, make_train
from purejaxppo.config import stack_hyperparams
from purejaxppo.loop import LOCAL_RUNS, compile_chunked
from purejaxppo.population import Population, train_population

CONFIG = PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 3)


def test_llvm_level_1_on_the_cpu_only(monkeypatch):
    if jax.default_backend() == "cpu":
        assert compiling.trainer_compiler_options() == {"xla_backend_optimization_level": 1}
        options = compiling.trainer_compiler_options()
        options["extra"] = 1
        assert "extra" not in compiling.trainer_compiler_options()  # a fresh dict each call
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert compiling.trainer_compiler_options() == {}


def population_of(num_runs: int) -> Population:
    keys = jax.random.split(jax.random.key(0), num_runs)
    hps = stack_hyperparams([Hyperparams()] * num_runs)
    return Population(tuple(range(num_runs)), ({},) * num_runs, keys, hps)


def test_options_change_no_result():
    trainer = make_train(CONFIG)
    population = population_of(2)
    default = jax.jit(jax.vmap(trainer))(population.keys, population.hyperparams)
    optimised, _ = train_population(trainer, population)
    chex.assert_trees_all_close(optimised.metrics, default.metrics, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(optimised.state.params, default.state.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["train_population", "compile_chunked", "bench"])
def test_options_reach_the_compiler(monkeypatch, path):
    """An option XLA does not know makes the trainer's compile fail on every path that
    compiles it: the fused call, the chunked loop (`train`'s default) and the benchmark."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU options are the ones replaced here")
    monkeypatch.setattr(compiling, "CPU_COMPILER_OPTIONS", {"xla_no_such_option": 1})
    trainer = make_train(CONFIG)
    population = population_of(1)
    with pytest.raises(Exception, match="xla_no_such_option"):
        if path == "train_population":
            train_population(trainer, population)
        elif path == "compile_chunked":
            compile_chunked(trainer, population, 1, runs=LOCAL_RUNS)
        else:
            bench.bench_point(trainer, Hyperparams(), num_seeds=1, repeats=1)


def test_garbage_collection_is_paused_inside_and_restored_after_an_error():
    import gc

    from purejaxppo.compiling import garbage_collection_paused

    assert gc.isenabled()
    with garbage_collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), garbage_collection_paused():
        raise RuntimeError("tracing failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with garbage_collection_paused():
            pass
        assert not gc.isenabled(), "a collector the caller had paused stays paused"
    finally:
        gc.enable()
