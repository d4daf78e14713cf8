"""Several random arrays from one draw of random bits.

Each `jax.random` call on the CPU is a threefry hash compiled as a 5-round loop of a dozen
small kernels. Drawing the bits of everything an update needs in one call, and cutting them
into keys, noise and shuffle keys, leaves one such loop where there were six: fewer kernels to
compile and to launch per update. A key cut out of the bits is what `jax.random.split` makes
(split hashes a counter with the parent key; `bits` hashes a counter too).
"""

from __future__ import annotations

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
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [
        bits[start : start + size].reshape(shape)
        for start, size, shape in zip(starts, sizes, shapes, strict=True)
    ]


def keys_from_bits(bits: jax.Array, like: jax.Array) -> jax.Array:
    """Keys `[...]` of `like`'s implementation from bits `[..., key_words]`."""
    return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(as_typed_key(like)))
