"""One draw of random bits per update: its pieces, the noise made from them, and the count of
threefry hashes left in an update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr
from suite_helpers import jit_fast

from purejaxppo.config import Hyperparams, PPOConfig
from purejaxppo.ppo.permutation import random_permutation
from purejaxppo.ppo.randomness import (
    as_typed_key,
    draw_bits,
    key_words,
    keys_from_bits,
    noise_from_bits,
    uniform_from_bits,
)
from purejaxppo.ppo.trainer import draw_update_randomness, make_train, update_step

CONFIG = PPOConfig(env="CartPole-v1", num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3)


def test_draw_bits_cuts_one_draw_into_pieces():
    key = jax.random.key(3)
    shapes = [(2,), (3, 4), (5,), ()]
    pieces = draw_bits(key, shapes)
    assert [p.shape for p in pieces] == shapes
    assert all(p.dtype == jnp.uint32 for p in pieces)
    whole = np.asarray(jax.random.bits(key, (2 + 12 + 5 + 1,), jnp.uint32))
    np.testing.assert_array_equal(np.concatenate([np.ravel(p) for p in pieces]), whole)


def test_raw_and_typed_keys_draw_the_same_bits():
    raw = jax.random.PRNGKey(5)
    typed = jax.random.wrap_key_data(raw)
    assert key_words(raw) == key_words(typed) == 2
    assert jnp.issubdtype(as_typed_key(raw).dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(draw_bits(raw, [(7,)])[0], draw_bits(typed, [(7,)])[0])


def test_keys_from_bits_are_the_bits_as_keys():
    key = jax.random.key(0)
    (bits,) = draw_bits(key, [(6, key_words(key))])
    keys = keys_from_bits(bits, key)
    assert keys.shape == (6,)
    np.testing.assert_array_equal(jax.random.key_data(keys), bits)
    assert jax.random.key_impl(keys) == jax.random.key_impl(key)


def test_uniform_from_bits_covers_zero_to_one():
    extremes = jnp.array([0, 1 << 9, 0x80000000, 0xFFFFFFFF], jnp.uint32)
    u = np.asarray(uniform_from_bits(extremes))
    np.testing.assert_allclose(u, [0.0, 2.0**-23, 0.5, 1.0 - 2.0**-23])
    many = np.asarray(uniform_from_bits(jax.random.bits(jax.random.key(1), (200_000,))))
    assert many.min() >= 0.0 and many.max() < 1.0
    np.testing.assert_allclose(many.mean(), 0.5, atol=0.005)
    np.testing.assert_allclose(
        np.histogram(many, bins=10, range=(0, 1))[0] / many.size, 0.1, atol=0.005
    )


@pytest.mark.parametrize("discrete", [True, False])
def test_noise_from_bits_has_the_standard_moments_and_stays_finite(discrete):
    bits = jax.random.bits(jax.random.key(2), (400_000,), jnp.uint32)
    noise = np.asarray(noise_from_bits(discrete, bits))
    if discrete:  # standard Gumbel: mean Euler's gamma, std pi / sqrt(6)
        mean, std = 0.5772157, np.pi / np.sqrt(6.0)
    else:
        mean, std = 0.0, 1.0
    np.testing.assert_allclose(noise.mean(), mean, atol=0.01)
    np.testing.assert_allclose(noise.std(), std, rtol=0.01)
    if not discrete:
        np.testing.assert_allclose(np.mean(np.abs(noise) < 1.0), 0.6827, atol=0.005)
    edges = noise_from_bits(discrete, jnp.array([0, 0xFFFFFFFF], jnp.uint32))
    assert np.all(np.isfinite(np.asarray(edges)))


def test_update_randomness_is_one_draw_cut_in_order():
    """Each piece is its own slice of one `jax.random.bits` draw: next key, action noise,
    env keys, epoch keys (no bits used twice)."""
    trainer = make_train(CONFIG)
    key = jax.random.key(4)
    a = jax.jit(lambda k: draw_update_randomness(trainer, k))(key)
    T, N, A, E, w = CONFIG.num_steps, CONFIG.num_envs, 2, CONFIG.update_epochs, key_words(key)
    assert a.rollout.action.shape == (T, N, A)
    assert a.rollout.env_keys.shape == (T, N)
    assert a.epoch_keys.shape == (E,)
    bits = np.asarray(jax.random.bits(key, (w + T * N * A + T * N * w + E * w,), jnp.uint32))
    cuts = np.cumsum([w, T * N * A, T * N * w])
    next_bits, action_bits, env_bits, epoch_bits = np.split(bits, cuts)
    data = lambda k: np.asarray(jax.random.key_data(k)).reshape(-1, w)  # noqa: E731
    np.testing.assert_array_equal(data(a.next_key), next_bits.reshape(-1, w))
    expected_noise = noise_from_bits(True, jnp.asarray(action_bits.reshape(T, N, A)))
    np.testing.assert_array_equal(a.rollout.action, expected_noise)
    np.testing.assert_array_equal(data(a.rollout.env_keys), env_bits.reshape(-1, w))
    np.testing.assert_array_equal(data(a.epoch_keys), epoch_bits.reshape(-1, w))
    all_keys = np.concatenate(
        [data(key), data(a.next_key), data(a.rollout.env_keys), data(a.epoch_keys)]
    )
    assert len({tuple(k) for k in all_keys}) == len(all_keys), "every key is distinct"
    other = draw_update_randomness(trainer, a.next_key)
    assert not np.array_equal(other.rollout.action, a.rollout.action)


def test_rollout_noise_matches_its_shapes():
    trainer = make_train(CONFIG.replace(env="Pendulum-v1"))
    noise = draw_update_randomness(trainer, jax.random.key(0)).rollout
    T, N = CONFIG.num_steps, CONFIG.num_envs
    assert noise.action.shape == (T, N, 1) and noise.action.dtype == jnp.float32
    assert noise.env_keys.shape == (T, N)


# Primitives that each hash with the key's implementation (threefry: one 5-round loop).
HASHING_PRIMITIVES = {"random_bits", "random_split", "random_fold_in", "threefry2x32"}


def _count_threefry(jaxpr, primitives=HASHING_PRIMITIVES) -> int:
    """Hashing equations (`HASHING_PRIMITIVES`) in a jaxpr and all the jaxprs nested in it."""
    if isinstance(jaxpr, ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in primitives
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else [param]:
                if isinstance(sub, ClosedJaxpr | Jaxpr):
                    count += _count_threefry(sub, primitives)
    return count


def test_an_update_hashes_once_besides_the_env_and_the_shuffles():
    """One threefry hash draws all of an update's randomness; the others are the env's own
    (its step and auto-reset, in the rollout's scan) and each epoch's shuffle."""
    trainer = make_train(CONFIG)
    hp = Hyperparams()
    state = jax.eval_shape(trainer.init, jax.random.key(0), hp)  # tracing needs shapes only
    in_update = _count_threefry(jax.make_jaxpr(lambda s: update_step(trainer, hp, s))(state))
    spec = trainer.env
    env_step = jax.vmap(lambda k, s: spec.env.step(k, s, 0, spec.params))
    keys = jax.random.split(jax.random.key(0), CONFIG.num_envs)
    in_env = _count_threefry(jax.make_jaxpr(env_step)(keys, state.runner.env_state))
    in_shuffle = _count_threefry(
        jax.make_jaxpr(lambda k: random_permutation(k, 8))(jax.random.key(0))
    )
    assert in_env >= 1 and in_shuffle == 1
    assert in_update == 1 + in_env + in_shuffle


@pytest.mark.parametrize("discrete", [True, False])
def test_noise_from_bits_is_jax_s_noise_to_rounding(discrete):
    """The same formulas as `jax.random.gumbel` / `normal` on the same bits (jax scales its
    uniform draw differently, which moves the normal's far tail by about 1e-3)."""
    key = jax.random.key(7)
    ours = np.asarray(noise_from_bits(discrete, jax.random.bits(key, (50_000,), jnp.uint32)))
    draw = jax.random.gumbel if discrete else jax.random.normal
    np.testing.assert_allclose(ours, np.asarray(draw(key, (50_000,))), atol=3e-3)


@pytest.mark.parametrize("raw", [True, False])
def test_a_state_keeps_its_key_type_through_updates(raw):
    """A raw `uint32` key (`jax.random.PRNGKey`) gives a state with a raw key, which stays raw
    through the update scan; a typed key stays typed."""
    trainer = make_train(CONFIG)
    hp = Hyperparams()
    key = jax.random.PRNGKey(0) if raw else jax.random.key(0)
    state = jit_fast(trainer.init)(key, hp)
    assert jnp.issubdtype(state.key.dtype, jax.dtypes.prng_key) != raw
    state, metrics = jit_fast(lambda s: trainer.run_updates(hp, s, 2))(state)
    assert state.key.dtype == key.dtype and state.key.shape == key.shape
    assert np.all(np.isfinite(np.asarray(metrics.total_loss)))


def test_init_hashes_once_besides_the_env_reset():
    """init draws the state's key, the env keys and the network's bits in one hash; the
    other hashes are the env's own reset draws. (flax folds a key for each parameter it
    creates, `random_fold_in`; no initialiser of these networks uses them, and XLA removes
    them as dead code, so they are not counted.)"""
    trainer = make_train(CONFIG)
    init = jax.make_jaxpr(lambda k: trainer.init(k, Hyperparams()))(jax.random.key(0))
    in_init = _count_threefry(init, {"random_bits", "random_split", "threefry2x32"})
    spec = trainer.env
    reset = jax.vmap(lambda k: spec.env.reset(k, spec.params))
    keys = jax.random.split(jax.random.key(0), CONFIG.num_envs)
    in_reset = _count_threefry(jax.make_jaxpr(reset)(keys))
    assert in_reset >= 1
    assert in_init == 1 + in_reset
