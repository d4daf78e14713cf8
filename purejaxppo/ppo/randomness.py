"""Several random arrays from one draw of random bits, and noise made from bits.

Each `jax.random` call on the CPU is a threefry hash compiled as a 5-round loop of about 16
small kernels. Drawing the bits of everything an update needs in one call, and cutting them
into keys, noise and epoch keys, leaves one such loop where there were five: fewer kernels to
compile and to launch per update. The words of a key cut out of the bits are hashes of a
counter under the parent key, as `jax.random.split`'s are, though not the same words (with
jax's default partitionable threefry, split keeps both halves of each hash, `bits` their
xor): independent uniform bits either way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def as_typed_key(key: jax.Array) -> jax.Array:
    """A typed PRNG key from `key`, typed already or a raw `uint32` key (`PRNGKey`)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def key_words(key: jax.Array) -> int:
    """uint32 words in one key of `key`'s implementation (2 for threefry)."""
    return int(jax.eval_shape(jax.random.key_data, as_typed_key(key)).shape[-1])


def draw_bits(key: jax.Array, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
    """uint32 arrays of the given shapes, cut from one `jax.random.bits` call with `key`."""
    sizes = [math.prod(shape) for shape in shapes]
    bits = jax.random.bits(as_typed_key(key), (sum(sizes),), jnp.uint32)
    starts = list(itertools.accumulate(sizes, initial=0))[: len(sizes)]
    return [
        bits[start : start + size].reshape(shape)
        for start, size, shape in zip(starts, sizes, shapes, strict=True)
    ]


def keys_from_bits(bits: jax.Array, like: jax.Array) -> jax.Array:
    """Typed keys `[...]` of `like`'s implementation from bits `[..., key_words]`."""
    return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(as_typed_key(like)))


def carried_key_from_bits(bits: jax.Array, like: jax.Array) -> jax.Array:
    """A key from bits `[key_words]` in the form of `like`: typed, or raw `uint32` data if
    `like` is a raw key (so a key carried through a scan keeps its type)."""
    key = keys_from_bits(bits, like)
    return key if jnp.issubdtype(like.dtype, jax.dtypes.prng_key) else jax.random.key_data(key)


def noise_from_bits(discrete: bool, bits: jax.Array) -> jax.Array:
    """Noise from uniform random uint32 `bits`, one per noise value (any shape): standard
    Gumbel if `discrete` (for the Gumbel-max trick), else standard normal."""
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
