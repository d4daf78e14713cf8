"""Actor-critic networks: separate policy and value towers with orthogonal initialisation.

Observations of any shape are flattened for the MLP torso; the CNN torso (for image-like
observations such as MinAtar's `[10, 10, C]`) applies one 3x3 convolution first.

Both networks act through one interface, so rollout, loss and evaluation serve both:

    step(hidden [N, H], obs [N, *obs_shape], first [N]) -> (hidden, distribution, value [N])

`first` marks the first observation of an episode, where the recurrent network starts from a
zero hidden state. The feed-forward `ActorCritic` keeps no memory (`hidden` is None);
`RecurrentActorCritic` embeds the observation, runs a GRU cell and feeds its output to
separate policy and value heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.config import ConfigError, PPOConfig
from purejaxppo.envs.spec import EnvSpec
from purejaxppo.ppo.distributions import Categorical, DiagGaussian, Distribution, noise_from_bits
from purejaxppo.ppo.randomness import draw_bits, key_words, keys_from_bits

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
}


def orthogonal_matrices(
    key: jax.Array, shapes: Sequence[tuple[int, ...]], scales: Sequence[float]
) -> list[jax.Array]:
    """Haar-random orthogonal arrays of the given shapes, each times its scale, from one
    normal draw and one batched Gram-Schmidt (so a network's kernels compile as one loop).

    Each shape is read as a matrix `[prod(shape[:-1]), shape[-1]]` whose smaller side is
    orthonormal. Its Gaussian `[m, k]` (m >= k) sits in the corner of a zero `[M, K]` block
    shared by all; Gram-Schmidt handles the columns in order, so the corner's columns come
    out exactly as they would alone and the zero padding stays zero. Same distribution as
    `flax.linen.initializers.orthogonal`, but without LAPACK's QR: under `vmap` over seeds
    that QR becomes one batched LAPACK call, which jaxlib 0.10 splits over its intra-op
    thread pool and which deadlocks intermittently on a 2-core CPU.
    """
    bits = jax.random.bits(key, orthogonal_bits_shape(shapes), jnp.uint32)
    return orthogonal_matrices_from_bits(bits, shapes, scales)


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
    """`orthogonal_matrices` from uniform random uint32 `bits` `orthogonal_bits_shape(shapes)`
    (made standard normal by `noise_from_bits`)."""
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


@flax.struct.dataclass
class OrthogonalKernel(nn.meta.AxisMetadata):
    """A kernel declared orthogonal (times `scale`): NaN (so a network used without
    `init_network` fails loudly) until `init_network` fills every such kernel of a network
    from one `orthogonal_matrices` call."""

    value: jax.Array
    scale: float = flax.struct.field(pytree_node=False)

    def unbox(self) -> jax.Array:
        return self.value

    def replace_boxed(self, val: jax.Array) -> OrthogonalKernel:
        return self.replace(value=val)

    def add_axis(self, index: int, params: dict) -> OrthogonalKernel:
        return self

    def remove_axis(self, index: int, params: dict) -> OrthogonalKernel:
        return self


def orthogonal_kernel(scale: float) -> Callable[..., OrthogonalKernel]:
    """The modules' kernel initializer: declares the kernel; `init_network` draws it."""

    def declare(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32):
        return OrthogonalKernel(jnp.full(shape, jnp.nan, dtype), scale)

    return declare


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

    Autodiff computes it as `(g.T @ x).T`, rows `out`. XLA:CPU contracts over the sample axis
    4-5x faster when the result has few rows and many columns: for a 16,384-sample chunk a
    `[4, 64]` first-layer gradient took 0.13 ms against 0.63 ms for `[64, 4]`, and a `[2, 64]`
    policy-head gradient 0.12 ms against 0.62 ms for `[64, 2]`. The barrier keeps XLA from
    folding the transpose back into the product."""
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


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=orthogonal_kernel(scale), dot_general=dense_dot_general)


class Tower(nn.Module):
    """Torso (flatten, or conv then flatten) followed by hidden layers and a linear head."""

    hidden_sizes: Sequence[int]
    activation: str
    out_features: int
    out_scale: float
    obs_ndim: int
    conv: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        batch_shape = obs.shape[: obs.ndim - self.obs_ndim]
        x = obs
        if self.conv:
            x = x.reshape((-1, *obs.shape[obs.ndim - self.obs_ndim :]))
            x = nn.relu(nn.Conv(16, (3, 3), kernel_init=orthogonal_kernel(math.sqrt(2)))(x))
        x = x.reshape((*batch_shape, -1))
        for width in self.hidden_sizes:
            x = act(_dense(width, math.sqrt(2))(x))
        return _dense(self.out_features, self.out_scale)(x)


class ActorCritic(nn.Module):
    """Maps observations `[..., *obs_shape]` to an action distribution and a value `[...]`."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int]
    activation: str
    obs_ndim: int
    conv: bool = False

    def setup(self) -> None:
        tower = dict(
            hidden_sizes=self.hidden_sizes,
            activation=self.activation,
            obs_ndim=self.obs_ndim,
            conv=self.conv,
        )
        self.actor = Tower(out_features=self.action_dim, out_scale=0.01, **tower)
        self.critic = Tower(out_features=1, out_scale=1.0, **tower)
        if not self.discrete:
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))

    def __call__(self, obs: jax.Array) -> tuple[Distribution, jax.Array]:
        return self.policy(obs), self.value(obs)

    def policy(self, obs: jax.Array) -> Distribution:
        out = self.actor(obs)
        if self.discrete:
            return Categorical(out)
        return DiagGaussian(out, self.log_std)

    def value(self, obs: jax.Array) -> jax.Array:
        return self.critic(obs)[..., 0]

    def step(
        self, hidden: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution, jax.Array]:
        """The common acting interface; a feed-forward network keeps no memory."""
        dist, value = self(obs)
        return hidden, dist, value

    def step_value(self, hidden: jax.Array, obs: jax.Array, first: jax.Array) -> jax.Array:
        return self.value(obs)

    def policy_step(
        self, hidden: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution]:
        """`step` without the value: what acting needs."""
        return hidden, self.policy(obs)

    def value_after(self, memory: jax.Array, obs: jax.Array) -> jax.Array:
        """The value `step` returned for `obs`, given the memory `step` returned with it."""
        return self.value(obs)

    @property
    def memory_size(self) -> int:
        return 0


class RecurrentActorCritic(nn.Module):
    """Observation embedding -> GRU cell (reset where `first`) -> policy and value heads."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int]
    activation: str
    obs_ndim: int
    gru_size: int
    conv: bool = False

    def setup(self) -> None:
        self.embed = Tower(
            hidden_sizes=(),
            activation=self.activation,
            out_features=self.hidden_sizes[0],
            out_scale=math.sqrt(2),
            obs_ndim=self.obs_ndim,
            conv=self.conv,
        )
        # Its recurrent kernels join the network's one orthogonal draw (flax's default is a
        # LAPACK QR each); its input kernels keep flax's LeCun normal.
        self.cell = nn.GRUCell(self.gru_size, recurrent_kernel_init=orthogonal_kernel(1.0))
        head = dict(hidden_sizes=self.hidden_sizes[1:], activation=self.activation, obs_ndim=1)
        self.actor = Tower(out_features=self.action_dim, out_scale=0.01, **head)
        self.critic = Tower(out_features=1, out_scale=1.0, **head)
        if not self.discrete:
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))

    def __call__(
        self, hidden: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution, jax.Array]:
        return self.step(hidden, obs, first)

    def memory(self, hidden: jax.Array, obs: jax.Array, first: jax.Array) -> jax.Array:
        """GRU output for `obs` `[..., *obs_shape]` after `hidden` `[..., H]` (zeroed where
        `first` `[...]`): the new hidden state, which is also what the heads read."""
        hidden = jnp.where(first[..., None], 0.0, hidden)
        features = _ACTIVATIONS[self.activation](self.embed(obs))
        hidden, _ = self.cell(hidden, features)
        return hidden

    def step(
        self, hidden: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution, jax.Array]:
        hidden, dist = self.policy_step(hidden, obs, first)
        return hidden, dist, self.value_after(hidden, obs)

    def policy_step(
        self, hidden: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution]:
        """`step` without the value: what acting needs."""
        hidden = self.memory(hidden, obs, first)
        out = self.actor(hidden)
        return hidden, Categorical(out) if self.discrete else DiagGaussian(out, self.log_std)

    def value_after(self, memory: jax.Array, obs: jax.Array) -> jax.Array:
        """The value `step` returned for `obs`, given the memory `step` returned with it."""
        return self.critic(memory)[..., 0]

    def step_value(self, hidden: jax.Array, obs: jax.Array, first: jax.Array) -> jax.Array:
        return self.value_after(self.memory(hidden, obs, first), obs)

    @property
    def memory_size(self) -> int:
        return self.gru_size


Network = ActorCritic | RecurrentActorCritic


def initial_memory(network: Network, num_envs: int) -> jax.Array | None:
    """Zero hidden state `[num_envs, H]`, or None for a feed-forward network (no memory)."""
    if not network.memory_size:
        return None
    return jnp.zeros((num_envs, network.memory_size), jnp.float32)


def init_network(network: Network, key: jax.Array, obs: jax.Array) -> dict:
    """Parameters from example observations `obs` `[N, *obs_shape]`: the modules' own
    initialisers, then every `OrthogonalKernel` from `orthogonal_matrices_from_bits`; the
    modules' key and the kernels' bits come from one draw (`draw_bits`)."""
    shapes = init_bits_shapes(network, obs, key_words(key))
    return init_network_from_bits(network, draw_bits(key, shapes), obs, like=key)


def init_bits_shapes(
    network: Network, obs: jax.Array | jax.ShapeDtypeStruct, words: int
) -> list[tuple[int, ...]]:
    """The uint32 bits `init_network_from_bits` takes: a module key `[words]`, then the
    orthogonal kernels' block (`orthogonal_bits_shape`) if the network declares any. Only
    the shape of `obs` is used."""
    key = jax.random.key(0)  # shapes only: the key's value does not matter
    params = jax.eval_shape(lambda k: _init_modules(network, k, jnp.zeros(obs.shape)), key)
    kernels = _orthogonal_kernels(params)
    if not kernels:
        return [(words,)]
    return [(words,), orthogonal_bits_shape([x.value.shape for x in kernels])]


def init_network_from_bits(
    network: Network, bits: Sequence[jax.Array], obs: jax.Array, like: jax.Array
) -> dict:
    """`init_network` from the bits of `init_bits_shapes` (the module key of `like`'s kind)."""
    module_bits, *kernel_bits = bits
    params = _init_modules(network, keys_from_bits(module_bits, like), obs)
    declared = _orthogonal_kernels(params)
    if not declared:
        return params
    shapes = [x.value.shape for x in declared]
    drawn = iter(orthogonal_matrices_from_bits(kernel_bits[0], shapes, [x.scale for x in declared]))
    return jax.tree.map(
        lambda x: next(drawn) if _is_orthogonal(x) else x, params, is_leaf=_is_orthogonal
    )


def _init_modules(network: Network, key: jax.Array, obs: jax.Array) -> dict:
    """The modules' own initialisation (orthogonal kernels still NaN placeholders)."""
    first = jnp.ones(obs.shape[:1], bool)
    hidden = initial_memory(network, obs.shape[0])  # None: feed-forward
    return network.init(key, hidden, obs, first, method="step")


def _is_orthogonal(x: object) -> bool:
    return isinstance(x, OrthogonalKernel)


def _orthogonal_kernels(params: Any) -> list[OrthogonalKernel]:
    return [x for x in jax.tree.leaves(params, is_leaf=_is_orthogonal) if _is_orthogonal(x)]


def act(
    network: Network, params: dict, hidden: jax.Array, obs: jax.Array, first: jax.Array
) -> tuple[jax.Array, Distribution, jax.Array]:
    """One step for a batch `[N]`: new hidden `[N, H]`, the action distribution, value `[N]`."""
    return network.apply(params, hidden, obs, first, method="step")


def act_without_value(
    network: Network, params: dict, hidden: jax.Array, obs: jax.Array, first: jax.Array
) -> tuple[jax.Array, Distribution]:
    """`act` without the critic, for observations `[N, *obs_shape]` and `first` `[N]`: new
    hidden `[N, H]` (None: feed-forward) and the action distribution (batch `[N]`)."""
    return network.apply(params, hidden, obs, first, method="policy_step")


def values_of(
    network: Network, params: dict, memory: jax.Array | None, obs: jax.Array
) -> jax.Array:
    """The values `act` gives for observations `[..., *obs_shape]` whose steps returned the
    memory `memory` `[..., H]` (None: feed-forward), computed for all of them at once."""
    return network.apply(params, memory, obs, method="value_after")


def unroll(
    network: Network, params: dict, hidden: jax.Array, obs: jax.Array, first: jax.Array
) -> tuple[Distribution, jax.Array]:
    """Replay sequences: `obs` `[T, n, *obs_shape]` and `first` `[T, n]` from `hidden`
    `[n, H]`; returns the distributions (batch `[T, n]`) and values `[T, n]`."""

    def one_step(h: jax.Array, inputs: tuple[jax.Array, jax.Array]):
        h, dist, value = act(network, params, h, *inputs)
        if isinstance(dist, DiagGaussian):  # stacked per step, log_std must have the batch
            dist = dist._replace(log_std=jnp.broadcast_to(dist.log_std, dist.mean.shape))
        return h, (dist, value)

    _, (dist, value) = jax.lax.scan(one_step, hidden, (obs, first))
    return dist, value


def make_network(config: PPOConfig, spec: EnvSpec) -> Network:
    if config.network == "cnn" and len(spec.obs_shape) != 3:
        raise ConfigError(
            f"network 'cnn' needs image observations [H, W, C]; {spec.name} has {spec.obs_shape}"
        )
    common = dict(
        action_dim=spec.action_dim,
        discrete=spec.discrete,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        obs_ndim=len(spec.obs_shape),
        conv=config.network == "cnn",
    )
    if config.recurrent:
        return RecurrentActorCritic(gru_size=config.gru_size, **common)
    return ActorCritic(**common)
