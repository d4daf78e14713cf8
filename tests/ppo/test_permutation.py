"""The minibatch shuffle's permutation: a bijection for every key, and uniform in law."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo.ppo.permutation import feistel_decrypt, feistel_encrypt, random_permutation
from purejaxppo.ppo.types import Batch
from purejaxppo.ppo.update import shuffle_into_minibatches


def test_feistel_is_a_bijection_with_its_inverse():
    round_keys = jax.random.bits(jax.random.key(3), (4,), jnp.uint32)
    x = jnp.concatenate(
        [
            jnp.arange(70_000, dtype=jnp.uint32),
            jnp.array([2**32 - 1, 2**31, 2**31 + 12_345], jnp.uint32),
        ]
    )
    y = feistel_encrypt(x, round_keys)
    assert len(np.unique(np.asarray(y))) == x.size
    np.testing.assert_array_equal(feistel_decrypt(y, round_keys), x)


@pytest.mark.parametrize("n", [1, 2, 7, 512, 1000, 262_144])
def test_permutation_of_range(n):
    perm = np.asarray(jax.jit(random_permutation, static_argnums=1)(jax.random.key(n), n))
    assert perm.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    if n >= 512:  # not the identity, nor a shift, nor a reversal
        assert np.mean(perm == np.arange(n)) < 0.05
        assert abs(np.corrcoef(perm, np.arange(n))[0, 1]) < 0.1


def test_all_permutations_equally_likely():
    n, draws = 4, 24 * 400
    keys = jax.random.split(jax.random.key(0), draws)
    perms = np.asarray(jax.vmap(lambda k: random_permutation(k, n))(keys))
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=math.factorial(n))
    expected = draws / len(counts)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 49.7  # the 0.999 quantile of chi-square with 23 degrees of freedom


def test_minibatch_membership_is_uniform():
    """Over many keys, each pair of samples shares a minibatch with probability (m-1)/(n-1)."""
    n, minibatches, draws = 64, 4, 4000
    keys = jax.random.split(jax.random.key(1), draws)
    perms = np.asarray(jax.vmap(lambda k: random_permutation(k, n))(keys))
    group = np.empty_like(perms)
    np.put_along_axis(group, perms, np.arange(n)[None] // (n // minibatches), axis=1)
    same = (group[:, :, None] == group[:, None, :]).mean(axis=0)
    expected = (n // minibatches - 1) / (n - 1)
    off_diagonal = same[~np.eye(n, dtype=bool)]
    assert abs(off_diagonal.mean() - expected) < 0.002
    assert np.abs(off_diagonal - expected).max() < 0.04  # ~5 standard errors of one pair
    first_position = np.argmax(perms == 0, axis=1)
    assert np.bincount(first_position, minlength=n).max() < 3 * draws / n


def test_shuffle_gathers_every_sample_once_in_permutation_order():
    size, minibatches = 12, 3
    data = jnp.arange(size, dtype=jnp.float32)
    batch = Batch(data[:, None], data, data, data, data, data)
    key = jax.random.key(5)
    shuffled = shuffle_into_minibatches(batch, key, minibatches)
    chex_shape = (minibatches, size // minibatches)
    assert shuffled.action.shape == chex_shape and shuffled.obs.shape == (*chex_shape, 1)
    order = np.asarray(random_permutation(key, size))
    np.testing.assert_array_equal(shuffled.action.reshape(-1), order)
    np.testing.assert_array_equal(shuffled.obs[..., 0], shuffled.target)
