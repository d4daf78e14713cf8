"""Backend tuning, decided once: `Tuning.for_backend` holds the choices the stages used to make
by reading the backend, the trainer carries it to every stage, and the plain program trains
to the same result up to float32 rounding."""

import ast
import dataclasses
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from suite_helpers import jit_fast

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.ppo.distributions import Categorical
from purejaxppo.ppo.networks import act
from purejaxppo.ppo.tuning import CPU_SMALL_SAMPLES, Tuning
from purejaxppo.ppo.update import gradient_slices

CONFIG = PPOConfig(
    num_envs=8, num_steps=16, total_timesteps=8 * 16 * 3, update_epochs=2, num_minibatches=2
)


def test_cpu_tuning_makes_the_decisions_the_stages_made_on_the_cpu():
    """Up to 16,384 samples per update: values after the scan and one traced run; above,
    neither. Always: gradients in slices of at most 16,384 samples, the column log-softmax,
    the few-row weight gradient and XLA's optimisation level 1."""
    small = Tuning.for_backend("cpu", CPU_SMALL_SAMPLES)
    large = Tuning.for_backend("cpu", CPU_SMALL_SAMPLES + 1)
    assert CPU_SMALL_SAMPLES == 16384
    assert small.values_after_scan and small.single_run_unbatched
    assert not large.values_after_scan and not large.single_run_unbatched
    for tuning in (small, large):
        assert tuning.backend == "cpu" and tuning.gradient_slice == 16384
        assert tuning.column_log_softmax and tuning.weight_gradient_product
        assert tuning.compiler_options_dict() == {"xla_backend_optimization_level": 1}
    big = PPOConfig(num_envs=64, num_steps=1024, total_timesteps=64 * 1024, num_minibatches=1)
    assert gradient_slices(big, large.gradient_slice) == 4  # 65,536 samples in 4 passes


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_accelerator_tuning_is_the_plain_program(backend):
    for samples in (64, CPU_SMALL_SAMPLES, 10 * CPU_SMALL_SAMPLES):
        tuning = Tuning.for_backend(backend, samples)
        assert tuning == Tuning.plain(backend)
    plain = Tuning.plain(backend)
    assert plain.backend == backend and plain.gradient_slice is None
    assert not any(
        [
            plain.values_after_scan,
            plain.single_run_unbatched,
            plain.column_log_softmax,
            plain.weight_gradient_product,
            plain.compiler_options,
        ]
    )


def test_tuning_round_trips_through_json():
    for tuning in (Tuning.for_backend("cpu", 512), Tuning.plain("gpu")):
        assert Tuning.from_dict(tuning.to_dict()) == tuning
        hash(tuning)  # frozen: usable as a static argument


def test_make_train_stores_the_tuning_and_the_network_takes_its_kernels():
    default = make_train(CONFIG)
    assert default.tuning == Tuning.for_backend(jax.default_backend(), CONFIG.batch_size)
    plain = make_train(CONFIG, tuning=Tuning.plain())
    assert plain.tuning == Tuning.plain()
    fast = make_train(CONFIG, tuning=Tuning.for_backend("cpu", CONFIG.batch_size))
    obs = jnp.ones((16, 4))
    params = jit_fast(fast.init)(jax.random.key(0), Hyperparams()).params

    def custom_vjps(trainer) -> int:
        def loss(params):
            _, dist, value = act(trainer.network, params, None, obs, None)
            return jnp.sum(dist.log_prob(jnp.zeros(16, jnp.int32))) + jnp.sum(value)

        return str(jax.make_jaxpr(jax.grad(loss))(params)).count("custom_vjp_call")

    assert custom_vjps(fast) == 6  # two towers x three layers through `dense_product`
    assert custom_vjps(plain) == 0
    assert act(fast.network, params, None, obs, None).dist.column_log_softmax
    assert not act(plain.network, params, None, obs, None).dist.column_log_softmax


def test_categorical_is_a_pytree_of_its_logits_only():
    dist = Categorical(jnp.zeros((3, 2)), column_log_softmax=True)
    leaves, treedef = jax.tree.flatten(dist)
    assert len(leaves) == 1 and leaves[0] is dist.logits
    assert jax.tree.unflatten(treedef, leaves).column_log_softmax
    stacked = jax.vmap(lambda x: Categorical(x, True))(jnp.zeros((5, 3, 2)))
    assert stacked.logits.shape == (5, 3, 2) and stacked.column_log_softmax
    logits = jax.random.normal(jax.random.key(0), (64, 3))
    action = jnp.arange(64) % 3
    by_columns, by_reduction = Categorical(logits, True), Categorical(logits, False)
    np.testing.assert_allclose(
        by_columns.log_prob(action), by_reduction.log_prob(action), rtol=1e-6
    )
    np.testing.assert_allclose(by_columns.entropy(), by_reduction.entropy(), rtol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        CONFIG.replace(recurrent=True),
        CONFIG.replace(env="Pendulum-v1", normalize_obs=True),
    ],
    ids=["cartpole", "recurrent", "pendulum"],
)
def test_plain_tuning_trains_to_the_default_s_result(config):
    """The same samples, gradient steps and hyperparameters: params and metrics agree to
    float32 rounding; only the layout of the computation differs."""
    default = make_train(config)
    assert default.tuning != Tuning.plain(default.tuning.backend)  # two programs to compare
    plain = make_train(config, tuning=Tuning.plain())
    key, hp = jax.random.key(0), Hyperparams()
    a = jit_fast(default)(key, hp)
    b = jit_fast(plain)(key, hp)
    chex.assert_trees_all_close(a.state.params, b.state.params, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(a.metrics, b.metrics, rtol=1e-4, atol=1e-5)
    assert np.isfinite(np.asarray(b.metrics.total_loss)).all()


def test_every_tuning_choice_changes_the_program_or_its_compile():
    """Each field of the CPU tuning is read by a stage: switching it alone changes the
    traced update (the compiler options and single-run tracing change how it is compiled,
    which `tests/runs` checks)."""
    cpu = Tuning.for_backend("cpu", CONFIG.batch_size)
    big = CONFIG.replace(num_envs=4, num_steps=64, num_minibatches=1)
    hp = Hyperparams()

    def traced(config, tuning) -> str:
        trainer = make_train(config, tuning=tuning)
        state = jax.eval_shape(lambda k: trainer.init(k, hp), jax.random.key(0))
        return str(jax.make_jaxpr(lambda s: trainer.update_step(hp, s))(state))

    baseline = traced(big, dataclasses.replace(cpu, gradient_slice=256))
    switched = {
        "values_after_scan": dataclasses.replace(cpu, values_after_scan=False),
        "gradient_slice": dataclasses.replace(cpu, gradient_slice=64),
        "column_log_softmax": dataclasses.replace(cpu, column_log_softmax=False),
        "weight_gradient_product": dataclasses.replace(cpu, weight_gradient_product=False),
    }
    for name, tuning in switched.items():
        if name != "gradient_slice":
            tuning = dataclasses.replace(tuning, gradient_slice=256)
        assert traced(big, tuning) != baseline, name


def _backend_reads(path: Path) -> int:
    """Calls of `default_backend()` (as `jax.default_backend()` or bare) in a module."""
    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
    names = [getattr(call.func, "attr", getattr(call.func, "id", None)) for call in calls]
    return names.count("default_backend")


def test_no_stage_reads_the_backend():
    """`make_train` decides the tuning once; nothing else in `purejaxppo/ppo` asks jax."""
    package = Path(__file__).parents[2] / "purejaxppo" / "ppo"
    reads = {path.name: _backend_reads(path) for path in package.glob("*.py")}
    assert {name: n for name, n in reads.items() if n} == {"trainer.py": 1}, reads
