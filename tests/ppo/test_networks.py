"""Network initialisation: orthogonal without LAPACK, so it is safe under vmap on CPU."""

import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from suite_helpers import jit_fast

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.ppo.kernels import (
    dense_dot_general,
    dense_product,
    orthogonal_bits_shape,
    orthogonal_matrices_from_bits,
)
from purejaxppo.ppo.networks import act
from purejaxppo.ppo.randomness import draw_bits


def orthogonal_matrices(key, shapes, scales):
    """Orthogonal arrays of `shapes` times `scales` from `key`'s bits, drawn as init draws them."""
    (bits,) = draw_bits(key, [orthogonal_bits_shape(shapes)])
    return orthogonal_matrices_from_bits(bits, shapes, scales)


def orthogonal_init(scale):
    """One orthogonal array of `shape` times `scale`, as an initializer."""
    return lambda key, shape: orthogonal_matrices(key, [tuple(shape)], [scale])[0]


@pytest.mark.parametrize("shape", [(64, 64), (4, 64), (64, 2), (3, 3, 4, 16)])
def test_orthogonal_init_is_orthogonal_and_scaled(shape):
    w = np.asarray(orthogonal_init(2.0)(jax.random.key(0), shape)).reshape(-1, shape[-1])
    small = min(w.shape)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-4)


def test_orthogonal_init_is_random_and_unbiased():
    init = orthogonal_init(1.0)
    keys = jax.random.split(jax.random.key(1), 400)
    ws = np.asarray(jax.jit(jax.vmap(lambda k: init(k, (8, 8))))(keys))
    assert not np.allclose(ws[0], ws[1])
    # Haar measure: each entry has mean 0 and variance 1/n.
    assert np.all(np.abs(ws.mean(0)) < 0.1)
    np.testing.assert_allclose(ws.var(0).mean(), 1 / 8, rtol=0.1)


@pytest.mark.parametrize("recurrent", [False, True])
def test_batched_init_makes_no_lapack_call(recurrent):
    config = PPOConfig(num_envs=4, num_steps=8, total_timesteps=32, recurrent=recurrent)
    trainer = make_train(config)
    init = jax.vmap(lambda k: trainer.init(k, Hyperparams()).params)
    closed = jax.make_jaxpr(init)(jax.random.split(jax.random.key(0), 3))
    names = primitive_names(closed.jaxpr)
    assert "dot_general" in names  # the walk sees inside nested jaxprs
    assert not names & {"qr", "householder_product", "geqrf", "svd", "eigh", "lu"}


def primitive_names(jaxpr) -> set[str]:
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names |= primitive_names(sub)
    return names


def test_orthogonal_matrices_of_mixed_shapes_are_each_orthogonal_and_scaled():
    """One batched draw for kernels of different shapes (the zero padding must stay out)."""
    shapes = [(4, 64), (64, 64), (64, 2), (3, 3, 4, 16), (100, 8)]
    scales = [1.0, 2.0, 0.01, 3.0, 0.5]
    mats = orthogonal_matrices(jax.random.key(3), shapes, scales)
    for w, shape, scale in zip(mats, shapes, scales, strict=True):
        assert w.shape == shape
        w = np.asarray(w).reshape(-1, shape[-1])
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, scale**2 * np.eye(min(w.shape)), atol=1e-4 * scale**2)
    # Distinct kernels of one draw are not copies of each other.
    assert not np.allclose(np.asarray(mats[1])[:4] / 2.0, np.asarray(mats[0]))


def test_init_fills_every_declared_kernel():
    trainer = make_train(PPOConfig(num_envs=4, num_steps=8, total_timesteps=32))
    params = jit_fast(trainer.init)(jax.random.key(0), Hyperparams()).params
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves if "kernel" in str(p)}
    assert len(kernels) == 6  # two towers x three layers, all plain arrays
    for name, w in kernels.items():
        small = min(w.shape)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        scale2 = gram[0, 0]
        assert scale2 > 1e-5, name
        np.testing.assert_allclose(gram, scale2 * np.eye(small), atol=1e-4 * scale2 + 1e-9)
    head = kernels["['params']['actor']['Dense_2']['kernel']"]
    np.testing.assert_allclose(np.sum(head * head, axis=0), 0.01**2, rtol=1e-4)


def plain_product(x, kernel):
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@pytest.mark.parametrize(
    "x_shape, kernel_shape",
    [
        ((128, 4), (4, 64)),
        ((128, 64), (64, 2)),
        ((128, 64), (64, 64)),
        ((8, 16, 4), (4, 64)),
        ((8, 16, 64), (64, 2)),
    ],
)
def test_dense_product_has_the_values_and_gradients_of_the_plain_product(x_shape, kernel_shape):
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, x_shape)
    kernel = jax.random.normal(kk, kernel_shape)
    cotangent = jax.random.normal(kg, (*x_shape[:-1], kernel_shape[1]))

    def pulled_back(product):
        out, vjp = jax.vjp(product, x, kernel)
        return (out, *vjp(cotangent))

    fast, plain = jax.jit(pulled_back, static_argnums=0)(dense_product), pulled_back(plain_product)
    for a, b in zip(fast, plain, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_shape", [(4, 8), (8, 2)])  # in < out, and in > out
def test_dense_product_gradients_under_vmap_over_runs(kernel_shape):
    kx, kk = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (3, 32, kernel_shape[0]))  # 3 runs
    kernels = jax.random.normal(kk, (3, *kernel_shape))

    def loss(product, kernel, x):
        return jnp.sum(jnp.tanh(product(x, kernel)) ** 2)

    fast = jax.vmap(jax.grad(lambda k, x: loss(dense_product, k, x)))(kernels, x)
    plain = jax.vmap(jax.grad(lambda k, x: loss(plain_product, k, x)))(kernels, x)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(plain), rtol=1e-5, atol=1e-6)


def test_the_towers_differentiate_through_dense_product():
    """Every kernel of both towers gets its gradient from `dense_product`'s VJP (if flax's
    `Dense` stopped calling `dot_general=`, they would fall back to plain autodiff)."""
    trainer = make_train(PPOConfig(num_envs=4, num_steps=8, total_timesteps=32))
    obs = jnp.ones((16, 4))
    params = jax.eval_shape(trainer.init, jax.random.key(0), Hyperparams()).params  # traced only

    def loss(params):
        _, dist, value = act(trainer.network, params, None, obs, None)
        return jnp.sum(dist.logits) + jnp.sum(value)

    jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
    assert jaxpr.count("custom_vjp_call") == 6, jaxpr  # two towers x three layers


def test_dense_dot_general_falls_back_for_other_contractions():
    a, b = jnp.ones((2, 3, 4)), jnp.ones((2, 4, 5))
    batched = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_array_equal(
        dense_dot_general(a, b, batched), jax.lax.dot_general(a, b, batched)
    )


def test_weight_gradients_are_products_with_few_rows():
    """The compiled gradient of a 4 -> 64 -> 2 network computes its kernels' gradients as
    [4, 64] and [2, 64] products (the fast orientation on XLA:CPU), not [64, 4] / [64, 2]."""
    x = jnp.ones((4096, 4))
    params = (jnp.ones((4, 64)), jnp.ones((64, 2)))

    def loss(params):
        hidden = jnp.tanh(dense_product(x, params[0]))
        return jnp.sum(dense_product(hidden, params[1]) ** 2)

    hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    # Each product's result as it lies in memory: [rows, columns] of its layout.
    layouts = re.findall(r"= f32\[(\d+),(\d+)\]\{(\d),(\d)\} dot\(", hlo)
    stored = {(int(a), int(b)) if major == "0" else (int(b), int(a)) for a, b, _, major in layouts}
    assert {(4, 64), (2, 64)} <= stored, stored
    assert not {(64, 4), (64, 2)} & stored, stored
