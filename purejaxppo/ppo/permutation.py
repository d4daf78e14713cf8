"""Random permutations for minibatch shuffling, with one single-operand sort.

`jax.random.permutation` sorts (random key, index) pairs, in two rounds once the batch is
larger than a few thousand samples; a sort of one uint32 operand is several times cheaper on
the CPU (benchmarks/README.md, "Why the code is shaped as it is").

Here each index `i` is mapped through a keyed bijection `f` of the 32-bit integers (a
four-round Feistel network, whose round keys come from `key`). The values `f(i)` are distinct
for distinct `i`, so sorting them alone orders the indices without ties, and applying `f^-1` to
the sorted values gives the indices back in that order. The result is a permutation of
`[0, n)` for every key; its randomness is that of the keyed mixing, tested for uniformity in
`tests/ppo/test_permutation.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FEISTEL_ROUNDS = 4
_HALF_MASK = 0xFFFF


def _mix16(half: jax.Array, round_key: jax.Array) -> jax.Array:
    """Round function: 16 pseudo-random bits from a 16-bit half and a 32-bit round key."""
    h = (half ^ round_key) * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    return h & jnp.uint32(_HALF_MASK)


def feistel_encrypt(x: jax.Array, round_keys: jax.Array) -> jax.Array:
    """Keyed bijection of uint32 `x` (any shape); `round_keys` `[FEISTEL_ROUNDS]` uint32."""
    left, right = x >> 16, x & jnp.uint32(_HALF_MASK)
    for r in range(FEISTEL_ROUNDS):
        left, right = right, left ^ _mix16(right, round_keys[r])
    return (left << 16) | right


def feistel_decrypt(y: jax.Array, round_keys: jax.Array) -> jax.Array:
    """Inverse of `feistel_encrypt` with the same round keys."""
    left, right = y >> 16, y & jnp.uint32(_HALF_MASK)
    for r in reversed(range(FEISTEL_ROUNDS)):
        left, right = right ^ _mix16(left, round_keys[r]), left
    return (left << 16) | right


def random_permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of `[0, n)` `[n]` int32 (n < 2**31), from one uint32 sort."""
    if not 0 <= n < 2**31:
        raise ValueError(f"random_permutation needs 0 <= n < 2**31, got {n}")
    round_keys = jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)
    encrypted = jnp.sort(feistel_encrypt(jnp.arange(n, dtype=jnp.uint32), round_keys))
    return feistel_decrypt(encrypted, round_keys).astype(jnp.int32)
