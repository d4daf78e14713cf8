"""Action distributions as small pytrees: categorical (discrete) and diagonal Gaussian.

Each offers `sample(key)`, `log_prob(action)`, `entropy()` and `mode()`; batch shape is
whatever leading shape the parameters have (e.g. `[N]` in a rollout, `[B]` in a minibatch).

Sampling is split in two so a rollout can draw all of its noise in one op before its scan:
`draw_noise(discrete, key, shape)` gives the noise for samples of shape `shape` (Gumbel for
a categorical, standard normal for a Gaussian), `sample_with(noise)` turns it into actions,
and `sample(key)` is the two together.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from purejaxppo.ppo.kernels import log_softmax
from purejaxppo.ppo.randomness import noise_from_bits

_LOG_2PI = math.log(2.0 * math.pi)


def draw_noise(discrete: bool, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Noise `shape` (`[..., num_actions]` or `[..., D]`) for `sample_with`: standard Gumbel
    for a categorical (the Gumbel-max trick), standard normal for a diagonal Gaussian."""
    return noise_from_bits(discrete, jax.random.bits(key, shape, jnp.uint32))


@flax.struct.dataclass
class Categorical:
    """Categorical over the last axis of `logits` `[..., num_actions]` (the only pytree leaf).

    `column_log_softmax` (static, from `Tuning`) takes the log-softmax of a few actions by
    columns (`kernels.log_softmax`); the same values either way."""

    logits: jax.Array
    column_log_softmax: bool = flax.struct.field(pytree_node=False, default=False)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_with(draw_noise(True, key, self.logits.shape))

    def sample_with(self, gumbel: jax.Array) -> jax.Array:
        """argmax(logits + Gumbel noise): a draw from the categorical."""
        return jnp.argmax(self.logits + gumbel, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        log_p = log_softmax(self.logits, self.column_log_softmax)
        return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        log_p = log_softmax(self.logits, self.column_log_softmax)
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)


class DiagGaussian(NamedTuple):
    """Independent normals over the last axis: `mean` `[..., D]`, `log_std` broadcastable."""

    mean: jax.Array
    log_std: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_with(draw_noise(False, key, self.mean.shape))

    def sample_with(self, noise: jax.Array) -> jax.Array:
        """mean + std * standard-normal noise."""
        return self.mean + jnp.exp(self.log_std) * noise

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) * jnp.exp(-self.log_std)
        per_dim = -0.5 * z * z - self.log_std - 0.5 * _LOG_2PI
        return jnp.sum(per_dim, axis=-1)

    def entropy(self) -> jax.Array:
        per_dim = jnp.broadcast_to(self.log_std + 0.5 * (1.0 + _LOG_2PI), self.mean.shape)
        return jnp.sum(per_dim, axis=-1)

    def mode(self) -> jax.Array:
        return self.mean


Distribution = Categorical | DiagGaussian
