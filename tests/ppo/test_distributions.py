"""Log-probabilities and entropies against closed forms; sampling and mode."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo.ppo.distributions import Categorical, DiagGaussian, draw_noise
from purejaxppo.ppo.kernels import SMALL_ACTION_COUNT, log_softmax


def test_categorical_log_prob_entropy_closed_form():
    logits = jnp.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    dist = Categorical(logits)
    action = jnp.array([1, 2])
    np.testing.assert_allclose(dist.log_prob(action), np.log(probs[[0, 1], [1, 2]]), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), -(probs * np.log(probs)).sum(-1), rtol=1e-6)
    np.testing.assert_array_equal(dist.mode(), [1, 2])


def test_categorical_sample_frequencies():
    dist = Categorical(jnp.log(jnp.array([0.2, 0.5, 0.3])))
    samples = jax.vmap(dist.sample)(jax.random.split(jax.random.key(0), 20000))
    freq = np.bincount(np.asarray(samples), minlength=3) / samples.size
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.015)


def test_gaussian_log_prob_entropy_closed_form():
    mean = jnp.array([[0.5, -1.0], [0.0, 2.0]])
    log_std = jnp.array([0.3, -0.7])
    action = jnp.array([[1.0, 0.0], [-0.5, 2.5]])
    dist = DiagGaussian(mean, log_std)
    std = np.exp(np.asarray(log_std))
    per_dim = -0.5 * ((action - mean) / std) ** 2 - np.log(std * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(dist.log_prob(action), per_dim.sum(-1), rtol=1e-5)
    entropy = np.sum(0.5 * np.log(2 * math.pi * math.e * std**2))
    np.testing.assert_allclose(dist.entropy(), [entropy, entropy], rtol=1e-5)
    np.testing.assert_array_equal(dist.mode(), mean)


def test_gaussian_sample_moments():
    dist = DiagGaussian(jnp.full((50000, 1), 1.5), jnp.log(jnp.array([0.4])))
    samples = np.asarray(dist.sample(jax.random.key(1)))
    assert abs(samples.mean() - 1.5) < 0.01
    assert abs(samples.std() - 0.4) < 0.01


def test_mode_is_the_most_likely_action_for_any_batch_shape():
    logits = jax.random.normal(jax.random.key(2), (3, 4, 5))
    mode = Categorical(logits).mode()
    assert mode.shape == (3, 4)
    np.testing.assert_array_equal(mode, np.argmax(np.asarray(logits), axis=-1))
    log_p = jax.nn.log_softmax(logits)
    np.testing.assert_array_equal(Categorical(logits).log_prob(mode), jnp.max(log_p, axis=-1))
    mean = jax.random.normal(jax.random.key(3), (3, 4, 2))
    gaussian = DiagGaussian(mean, jnp.array([0.1, -0.4]))  # log_std broadcast over the batch
    np.testing.assert_array_equal(gaussian.mode(), mean)
    nudged = gaussian.log_prob(mean + 0.01)
    assert np.all(np.asarray(gaussian.log_prob(gaussian.mode())) > np.asarray(nudged))


def test_sample_with_noise_equals_sample_from_its_key():
    """The rollout draws its noise up front; sampling from that noise is `sample(key)`."""
    key = jax.random.key(5)
    logits = jax.random.normal(jax.random.key(6), (7, 3))
    cat = Categorical(logits)
    noise = draw_noise(True, key, logits.shape)
    np.testing.assert_array_equal(jax.random.categorical(key, logits), cat.sample_with(noise))
    np.testing.assert_array_equal(cat.sample(key), cat.sample_with(noise))
    gauss = DiagGaussian(logits, jnp.full((3,), -0.5))
    np.testing.assert_allclose(gauss.sample(key), gauss.sample_with(draw_noise(False, key, (7, 3))))


@pytest.mark.parametrize("num_actions", [1, 2, 3, SMALL_ACTION_COUNT, SMALL_ACTION_COUNT + 1])
def test_log_softmax_matches_jax_in_values_and_gradients(num_actions):
    logits = 5.0 * jax.random.normal(jax.random.key(num_actions), (64, 3, num_actions))
    cotangent = jax.random.normal(jax.random.key(99), logits.shape)
    ours, pull_ours = jax.vjp(log_softmax, logits)
    ref, pull_ref = jax.vjp(jax.nn.log_softmax, logits)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        pull_ours(cotangent)[0], pull_ref(cotangent)[0], rtol=1e-5, atol=1e-5
    )


def test_log_softmax_is_stable_for_large_logits():
    logits = jnp.array([[1000.0, 0.0], [-1000.0, -1001.0]])
    out = np.asarray(log_softmax(logits))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, jax.nn.log_softmax(logits), atol=1e-6)
