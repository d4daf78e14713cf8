"""Action distributions as small pytrees: categorical (discrete) and diagonal Gaussian.

Each offers `sample(key)`, `log_prob(action)`, `entropy()` and `mode()`; batch shape is
whatever leading shape the parameters have (e.g. `[N]` in a rollout, `[B]` in a minibatch).

Sampling is split in two so a rollout can draw all of its noise in one op before its scan:
`draw_noise(discrete, key, shape)` gives the noise for samples of shape `shape` (Gumbel for
a categorical, standard normal for a Gaussian), `sample_with(noise)` turns it into actions,
and `sample(key)` is the two together.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)

# Up to this many actions, `log_softmax` works column by column.
SMALL_ACTION_COUNT = 8


def log_softmax(logits: jax.Array) -> jax.Array:
    """`jax.nn.log_softmax` over the last axis, by the same formula (`x - max` minus the log of
    its exponentials' sum). For a few actions (<= `SMALL_ACTION_COUNT`) the max and the sum are
    taken column by column, as elementwise ops that XLA fuses into one loop, rather than as
    reductions over a short last axis: on the CPU the gradient of a CartPole loss on 16,384
    samples took 0.18 ms this way against 0.37 ms."""
    num_actions = logits.shape[-1]
    if num_actions > SMALL_ACTION_COUNT:
        return jax.nn.log_softmax(logits)
    peak = functools.reduce(jnp.maximum, [logits[..., i] for i in range(num_actions)])
    shifted = logits - jax.lax.stop_gradient(peak)[..., None]
    total = functools.reduce(jnp.add, [jnp.exp(shifted[..., i]) for i in range(num_actions)])
    return shifted - jnp.log(total)[..., None]


def draw_noise(discrete: bool, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Noise `shape` (`[..., num_actions]` or `[..., D]`) for `sample_with`: standard Gumbel
    for a categorical (the Gumbel-max trick), standard normal for a diagonal Gaussian."""
    return noise_from_bits(discrete, jax.random.bits(key, shape, jnp.uint32))


def noise_from_bits(discrete: bool, bits: jax.Array) -> jax.Array:
    """`draw_noise` from uniform random uint32 `bits`, one per noise value (any shape)."""
    uniform = uniform_from_bits(bits)
    if discrete:
        tiny = jnp.finfo(jnp.float32).tiny
        return -jnp.log(-jnp.log(jnp.maximum(uniform, tiny)))
    above_minus_one = jnp.nextafter(jnp.float32(-1.0), jnp.float32(0.0))
    return math.sqrt(2.0) * jax.lax.erf_inv(jnp.maximum(2.0 * uniform - 1.0, above_minus_one))


def uniform_from_bits(bits: jax.Array) -> jax.Array:
    """float32 uniform on [0, 1) from uint32 `bits`: their top 23 bits as the mantissa of a
    float in [1, 2), minus 1."""
    mantissa = jnp.right_shift(bits, jnp.uint32(9)) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


class Categorical(NamedTuple):
    """Categorical over the last axis of `logits` `[..., num_actions]`."""

    logits: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_with(draw_noise(True, key, self.logits.shape))

    def sample_with(self, gumbel: jax.Array) -> jax.Array:
        """argmax(logits + Gumbel noise): a draw from the categorical."""
        return jnp.argmax(self.logits + gumbel, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        log_p = log_softmax(self.logits)
        return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        log_p = log_softmax(self.logits)
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
