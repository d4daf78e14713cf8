"""The clipped surrogate and value losses on hand-made numbers."""

import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo.ppo.loss import clipped_surrogate_loss, value_loss


@pytest.mark.parametrize(
    ("ratio", "advantage", "expected"),
    [
        (1.5, 1.0, -1.2),  # positive advantage: ratio clipped above at 1 + eps
        (0.5, 1.0, -0.5),  # positive advantage, ratio low: unclipped (min) term
        (0.5, -1.0, 0.8),  # negative advantage: ratio clipped below at 1 - eps
        (1.5, -1.0, 1.5),  # negative advantage, ratio high: unclipped term (pessimistic)
        (1.1, 2.0, -2.2),  # inside the trust region: plain ratio * advantage
    ],
)
def test_clipped_surrogate_single(ratio, advantage, expected):
    loss = clipped_surrogate_loss(jnp.array([ratio]), jnp.array([advantage]), 0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_clipped_surrogate_mean_over_batch():
    ratio = jnp.array([1.5, 0.5, 0.5, 1.5])
    advantage = jnp.array([1.0, 1.0, -1.0, -1.0])
    np.testing.assert_allclose(
        clipped_surrogate_loss(ratio, advantage, 0.2), np.mean([-1.2, -0.5, 0.8, 1.5]), rtol=1e-6
    )


def test_value_loss_plain_and_clipped():
    value, old, target = jnp.array([3.0]), jnp.array([1.0]), jnp.array([2.5])
    np.testing.assert_allclose(value_loss(value, old, target, 0.2, clip=False), 0.5 * 0.25)
    # clipped value 1.2 is further from the target: max picks (1.2 - 2.5)^2
    np.testing.assert_allclose(
        value_loss(value, old, target, 0.2, clip=True), 0.5 * 1.3**2, rtol=1e-6
    )


def test_value_loss_clipped_takes_the_larger_error():
    # Overshoot: the unclipped value 3 is further from target 1.5 than the clipped 1.2.
    value, old, target = jnp.array([3.0]), jnp.array([1.0]), jnp.array([1.5])
    np.testing.assert_allclose(
        value_loss(value, old, target, 0.2, clip=True), 0.5 * 1.5**2, rtol=1e-6
    )
