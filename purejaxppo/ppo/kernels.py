"""Math kernels whose layout is tuned for the backend (`Tuning` says which are used), each
with the values of its plain counterpart:

- `dense_product`: `x @ kernel` with a custom VJP that takes the weight gradient in the
  orientation XLA:CPU computes fastest; `dense_dot_general` plugs it into `flax.linen.Dense`.
- `orthogonal_matrices_from_bits`: orthogonal initialisation from random bits, without LAPACK.
- `log_softmax`: by columns for a few actions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.ppo.randomness import noise_from_bits

# Up to this many actions, `log_softmax(..., by_column=True)` works column by column.
SMALL_ACTION_COUNT = 8


def log_softmax(logits: jax.Array, by_column: bool = True) -> jax.Array:
    """`jax.nn.log_softmax` over the last axis, by the same formula (`x - max` minus the log of
    its exponentials' sum). With `by_column` and a few actions (<= `SMALL_ACTION_COUNT`) the
    max and the sum are taken column by column, as elementwise ops that XLA fuses into one
    loop, rather than as reductions over a short last axis (faster on the CPU)."""
    num_actions = logits.shape[-1]
    if not by_column or num_actions > SMALL_ACTION_COUNT:
        return jax.nn.log_softmax(logits)
    peak = functools.reduce(jnp.maximum, [logits[..., i] for i in range(num_actions)])
    shifted = logits - jax.lax.stop_gradient(peak)[..., None]
    total = functools.reduce(jnp.add, [jnp.exp(shifted[..., i]) for i in range(num_actions)])
    return shifted - jnp.log(total)[..., None]


@jax.custom_vjp
def dense_product(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x @ kernel`: `[..., in] x [in, out] -> [..., out]`, with the weight gradient taken in
    the orientation XLA:CPU computes fastest (`_dense_product_bwd`); same values as autodiff
    of the plain product. Being a custom VJP, it supports reverse-mode autodiff only (`grad`,
    `vjp`), not `jvp` or `jacfwd`."""
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _dense_product_fwd(
    x: jax.Array, kernel: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return dense_product(x, kernel), (x, kernel)


def _dense_product_bwd(
    residuals: tuple[jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Input gradient `g @ kernel.T` `[..., in]`; weight gradient `[in, out]` summed over all
    samples, computed with the smaller of in and out as its rows.

    Autodiff computes it as `(g.T @ x).T`, rows `out`; XLA:CPU contracts over the sample axis
    several times faster when the result has few rows and many columns. The barrier keeps XLA
    from folding the transpose back into the product."""
    x, kernel = residuals
    x_flat = x.reshape(-1, x.shape[-1])  # [S, in]
    g_flat = g.reshape(-1, g.shape[-1])  # [S, out]
    over_samples = (((0,), (0,)), ((), ()))
    if kernel.shape[0] <= kernel.shape[1]:
        grad_kernel = jax.lax.dot_general(x_flat, g_flat, over_samples)
    else:
        grad_kernel = jax.lax.optimization_barrier(
            jax.lax.dot_general(g_flat, x_flat, over_samples)
        ).T
    grad_x = jax.lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
    return grad_x, grad_kernel


dense_product.defvjp(_dense_product_fwd, _dense_product_bwd)


def dense_dot_general(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers: jax.lax.DotDimensionNumbers,
    precision: jax.lax.PrecisionLike = None,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """`flax.linen.Dense`'s product (`dot_general=`) as `dense_product`; any other contraction
    or precision falls back to `lax.dot_general`."""
    plain = dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())) and rhs.ndim == 2
    if plain and precision is None and preferred_element_type is None:
        return dense_product(lhs, rhs)
    return jax.lax.dot_general(
        lhs, rhs, dimension_numbers, precision, preferred_element_type=preferred_element_type
    )


def _tall_sizes(shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Each shape as a matrix `(m, k)` with m >= k (the orthonormal side is k)."""
    sizes = [(math.prod(shape[:-1]), shape[-1]) for shape in shapes]
    return [(max(r, c), min(r, c)) for r, c in sizes]


def orthogonal_bits_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, int, int]:
    """The random uint32 bits `orthogonal_matrices_from_bits` takes for these shapes:
    `[len(shapes), M, K]`, M and K the largest sides."""
    tall = _tall_sizes(shapes)
    return (len(shapes), max(m for m, _ in tall), max(k for _, k in tall))


def orthogonal_matrices_from_bits(
    bits: jax.Array, shapes: Sequence[tuple[int, ...]], scales: Sequence[float]
) -> list[jax.Array]:
    """Haar-random orthogonal arrays of the given shapes, each times its scale, from uniform
    random uint32 `bits` `orthogonal_bits_shape(shapes)` (made standard normal by
    `noise_from_bits`) and one batched Gram-Schmidt (so a network's kernels compile as one loop).

    Each shape is read as a matrix `[prod(shape[:-1]), shape[-1]]` whose smaller side is
    orthonormal. Its Gaussian `[m, k]` (m >= k) sits in the corner of a zero `[M, K]` block
    shared by all; Gram-Schmidt handles the columns in order, so the corner's columns come
    out exactly as they would alone and the zero padding stays zero. Same distribution as
    `flax.linen.initializers.orthogonal`, but without LAPACK's QR: under `vmap` over seeds
    that QR becomes one batched LAPACK call, which jaxlib 0.10 splits over its intra-op
    thread pool and which deadlocks intermittently on a 2-core CPU.
    """
    sizes = [(math.prod(shape[:-1]), shape[-1]) for shape in shapes]
    tall = _tall_sizes(shapes)
    mask = np.zeros(orthogonal_bits_shape(shapes), np.float32)
    for i, (m, k) in enumerate(tall):
        mask[i, :m, :k] = 1.0
    gaussian = noise_from_bits(False, bits) * mask
    q = jax.vmap(orthonormal_columns)(gaussian)
    out = []
    for q_i, (rows, cols), (m, k), shape, scale in zip(q, sizes, tall, shapes, scales, strict=True):
        corner = q_i[:m, :k]
        out.append((scale * (corner if rows >= cols else corner.T)).reshape(shape))
    return out


def orthonormal_columns(a: jax.Array) -> jax.Array:
    """Q of the QR decomposition of `a` `[m, k]` (m >= k) with R's diagonal positive; all-zero
    columns stay zero. Classical Gram-Schmidt, each column orthogonalised twice (enough in
    float32)."""

    def add_column(j: jax.Array, q: jax.Array) -> jax.Array:
        v = a[:, j]
        for _ in range(2):
            v = v - q @ (q.T @ v)  # columns not yet set are zero and project nothing
        norm = jnp.sqrt(jnp.sum(v * v))
        return q.at[:, j].set(jnp.where(norm > 0, v / jnp.where(norm > 0, norm, 1.0), 0.0))

    return jax.lax.fori_loop(0, a.shape[1], add_column, jnp.zeros_like(a))
