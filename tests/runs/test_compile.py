"""The trainer's programs are compiled through `compile_program` with the options of
its backend tuning, and those options change no result (the optimised compile against
XLA's defaults on a short run)."""

import dataclasses

import chex
import jax
import pytest

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.config import stack_hyperparams
from purejaxppo.ppo.tuning import CPU_SMALL_SAMPLES, Tuning
from purejaxppo.runs import bench
from purejaxppo.runs import placement as placing
from purejaxppo.runs.chunked import compile_chunked
from purejaxppo.runs.placement import LOCAL_RUNS
from purejaxppo.runs.population import Population, train_population

CONFIG = PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 3)


def test_llvm_level_1_on_the_cpu_only():
    cpu = Tuning.for_backend("cpu", CONFIG.batch_size)
    assert cpu.compiler_options_dict() == {"xla_backend_optimization_level": 1}
    options = cpu.compiler_options_dict()
    options["extra"] = 1
    assert "extra" not in cpu.compiler_options_dict()  # a fresh dict each call
    assert Tuning.for_backend("gpu", CONFIG.batch_size).compiler_options_dict() == {}
    built = make_train(CONFIG).tuning
    assert built == Tuning.for_backend(jax.default_backend(), CONFIG.batch_size)


def population_of(num_runs: int) -> Population:
    keys = jax.random.split(jax.random.key(0), num_runs)
    hps = stack_hyperparams([Hyperparams()] * num_runs)
    return Population(tuple(range(num_runs)), ({},) * num_runs, keys, hps)


def compile_on_path(path: str, trainer, population: Population) -> None:
    """Compile (and for `train_population` and `bench`, run) one of the trainer's paths for a
    population of one run: the fused call, the chunked loop (`train`'s default), the bench."""
    if path == "train_population":
        train_population(trainer, population)
    elif path == "compile_chunked":
        compile_chunked(trainer, population, 1, placement=LOCAL_RUNS)
    else:
        bench.bench_point(trainer, Hyperparams(), 1, bench.BenchOptions(repeats=1))


@pytest.mark.slow
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
    tuning = Tuning.for_backend("cpu", CONFIG.batch_size)
    unknown = dataclasses.replace(tuning, compiler_options=(("xla_no_such_option", 1),))
    trainer = make_train(CONFIG, tuning=unknown)
    population = population_of(1)
    with pytest.raises(Exception, match="xla_no_such_option"):
        compile_on_path(path, trainer, population)


def test_garbage_collection_is_paused_inside_and_restored_after_an_error():
    import gc

    from purejaxppo.runs.compile import garbage_collection_paused

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


def test_map_over_runs_traces_a_single_run_without_vmap():
    seen = []

    def fn(key, x):
        seen.append((x.shape, type(x).__name__ == "BatchTracer"))
        return {"draw": jax.random.uniform(key, x.shape) + x, "total": x.sum()}

    mapped = placing.map_over_runs(fn, single_run_unbatched=True)
    for runs in (1, 3):
        keys = jax.random.split(jax.random.key(7), runs)
        x = jax.numpy.arange(runs * 2, dtype=jax.numpy.float32).reshape(runs, 2)
        seen.clear()
        out = jax.jit(mapped)(keys, x)
        assert seen == [((2,), runs > 1)], "vmap batches more than one run only"
        expected = jax.vmap(fn)(keys, x)
        chex.assert_trees_all_equal_shapes_and_dtypes(out, expected)
        chex.assert_trees_all_close(out, expected)
    seen.clear()
    jax.jit(placing.map_over_runs(fn, single_run_unbatched=False))(keys[:1], x[:1])
    assert seen == [((2,), True)], "a single run keeps the vmap when asked to"


def test_only_small_single_runs_on_the_cpu_are_traced_without_vmap():
    limit = CPU_SMALL_SAMPLES
    assert Tuning.for_backend("cpu", limit).single_run_unbatched
    assert not Tuning.for_backend("cpu", limit + 1).single_run_unbatched
    assert not Tuning.for_backend("gpu", 512).single_run_unbatched


@pytest.mark.parametrize("path", ["train_population", "compile_chunked", "bench"])
def test_every_path_traces_a_small_single_run_without_vmap(monkeypatch, path):
    """The fused call, the chunked loop's programs and the benchmark all trace one run of
    the small CONFIG without `vmap` on the CPU (more runs: `map_over_runs`' own test)."""
    if jax.default_backend() != "cpu":
        pytest.skip("single runs are traced without vmap on the CPU only")
    from purejaxppo.ppo import trainer as train_module

    batched = []
    init_state = train_module.init_state

    def recording_init_state(trainer, key, hp):
        batched.append(type(key).__name__ == "BatchTracer")
        return init_state(trainer, key, hp)

    monkeypatch.setattr(train_module, "init_state", recording_init_state)
    trainer = make_train(CONFIG)
    compile_on_path(path, trainer, population_of(1))
    assert batched and not any(batched), "init traced under vmap"
