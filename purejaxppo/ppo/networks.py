"""Actor-critic network: separate policy and value towers with orthogonal initialisation,
read by every stage through one acting API.

Observations of any shape are flattened for the MLP torso; the CNN torso (for image-like
observations such as MinAtar's `[10, 10, C]`) applies one 3x3 convolution first. With
`gru_size > 0` the towers read a GRU's output instead of the observation: the observation is
embedded, fed to a GRU cell whose carry (`rnn_state`) restarts from zero where `first` marks
an episode's first observation, and the cell's output is the new carry.

The acting API, for feed-forward and recurrent networks alike (`rnn_state` None: feed-forward):

    act(network, params, rnn_state [N, H], obs [N, *obs_shape], first [N], with_value)
        -> NetworkStep(rnn_state [N, H], dist (batch [N]), value [N] or None)
    value_after(network, params, rnn_state [..., H], obs [..., *obs_shape]) -> value [...]
    replay(network, params, batch: Batch) -> (dist, value), shaped like batch.value: flat
        samples [B], or sequences [T, n] from the carry batch.rnn_state [n, H] at their start

Rollout, loss, evaluation, render and export act through these alone; `ActorCritic.__call__`
is the one place observations become a distribution and a value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from purejaxppo.config import ConfigError, PPOConfig
from purejaxppo.envs.setup import EnvSetup
from purejaxppo.ppo.distributions import Categorical, DiagGaussian, Distribution
from purejaxppo.ppo.kernels import (
    dense_dot_general,
    orthogonal_bits_shape,
    orthogonal_matrices_from_bits,
)
from purejaxppo.ppo.randomness import keys_from_bits
from purejaxppo.ppo.tuning import Tuning
from purejaxppo.ppo.types import Batch

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
}


@flax.struct.dataclass
class OrthogonalKernel(nn.meta.AxisMetadata):
    """A kernel declared orthogonal (times `scale`): NaN (so a network used without
    `init_network_from_bits` fails loudly) until `init_network_from_bits` fills every such
    kernel of a network from one `orthogonal_matrices_from_bits` call."""

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
    """The modules' kernel initializer: declares the kernel; `init_network_from_bits` draws
    it."""

    def declare(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32):
        return OrthogonalKernel(jnp.full(shape, jnp.nan, dtype), scale)

    return declare


def _dense(features: int, scale: float, weight_gradient_product: bool) -> nn.Dense:
    """An orthogonally initialised layer, its product `kernels.dense_product` if asked."""
    product = dense_dot_general if weight_gradient_product else jax.lax.dot_general
    return nn.Dense(features, kernel_init=orthogonal_kernel(scale), dot_general=product)


class Tower(nn.Module):
    """Torso (flatten, or conv then flatten) followed by hidden layers and a linear head."""

    hidden_sizes: Sequence[int]
    activation: str
    out_features: int
    out_scale: float
    obs_ndim: int
    conv: bool = False
    weight_gradient_product: bool = False  # `Tuning.weight_gradient_product`

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
            x = act(_dense(width, math.sqrt(2), self.weight_gradient_product)(x))
        return _dense(self.out_features, self.out_scale, self.weight_gradient_product)(x)


def _tower(module: nn.Module, **kwargs: Any) -> Tower:
    """A tower of `module`'s activation, torso and kernel choice."""
    return Tower(
        activation=module.activation,
        weight_gradient_product=module.weight_gradient_product,
        **kwargs,
    )


def _distribution(module: nn.Module, out: jax.Array) -> Distribution:
    """The policy head's output `[..., action_dim]` as `module`'s action distribution."""
    if module.discrete:
        return Categorical(out, module.column_log_softmax)
    return DiagGaussian(out, module.log_std)


class NetworkStep(NamedTuple):
    """One step of the network for a batch `[N]`."""

    rnn_state: jax.Array | None  # [N, H] after the step (None: feed-forward)
    dist: Distribution  # batch [N]
    value: jax.Array | None  # [N] (None where it was not asked for)


class ActorCritic(nn.Module):
    """Observations `[..., *obs_shape]` -> an action distribution and a value `[...]`, the
    towers reading the observation, or (`gru_size > 0`) the output of a GRU cell."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int]
    activation: str
    obs_ndim: int
    gru_size: int = 0  # 0: feed-forward
    conv: bool = False
    weight_gradient_product: bool = False  # `Tuning.weight_gradient_product`
    column_log_softmax: bool = False  # `Tuning.column_log_softmax`

    def setup(self) -> None:
        heads = dict(hidden_sizes=self.hidden_sizes, obs_ndim=self.obs_ndim, conv=self.conv)
        if self.gru_size:
            self.embed = _tower(
                self,
                hidden_sizes=(),
                out_features=self.hidden_sizes[0],
                out_scale=math.sqrt(2),
                obs_ndim=self.obs_ndim,
                conv=self.conv,
            )
            # Its recurrent kernels join the network's one orthogonal draw (flax's default is
            # a LAPACK QR each); its input kernels keep flax's LeCun normal.
            self.cell = nn.GRUCell(self.gru_size, recurrent_kernel_init=orthogonal_kernel(1.0))
            heads = dict(hidden_sizes=self.hidden_sizes[1:], obs_ndim=1)
        self.actor = _tower(self, out_features=self.action_dim, out_scale=0.01, **heads)
        self.critic = _tower(self, out_features=1, out_scale=1.0, **heads)
        if not self.discrete:
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))

    def __call__(
        self,
        rnn_state: jax.Array | None,
        obs: jax.Array,
        first: jax.Array | None,
        with_value: bool = True,
    ) -> NetworkStep:
        """One step (`act`): the GRU's new carry (recurrent), then both heads on it."""
        if self.gru_size:
            rnn_state = self.next_rnn_state(rnn_state, obs, first)
        features = self.heads_input(rnn_state, obs)
        dist = _distribution(self, self.actor(features))
        value = self.critic(features)[..., 0] if with_value else None
        return NetworkStep(rnn_state, dist, value)

    def value_after(self, rnn_state: jax.Array | None, obs: jax.Array) -> jax.Array:
        """The value `__call__` gave for `obs`, given the `rnn_state` it returned with it."""
        return self.critic(self.heads_input(rnn_state, obs))[..., 0]

    def heads_input(self, rnn_state: jax.Array | None, obs: jax.Array) -> jax.Array:
        """What the towers read: the GRU's output (the carry after the step) or `obs`."""
        return rnn_state if self.gru_size else obs

    def next_rnn_state(self, rnn_state: jax.Array, obs: jax.Array, first: jax.Array) -> jax.Array:
        """The GRU's output for `obs` `[..., *obs_shape]` after `rnn_state` `[..., H]` (zeroed
        where `first` `[...]`): the new carry, which is also what the heads read."""
        rnn_state = jnp.where(first[..., None], 0.0, rnn_state)
        features = _ACTIVATIONS[self.activation](self.embed(obs))
        rnn_state, _ = self.cell(rnn_state, features)
        return rnn_state

    @property
    def rnn_size(self) -> int:
        return self.gru_size


Network = ActorCritic


def initial_rnn_state(network: Network, num_envs: int) -> jax.Array | None:
    """A zero `rnn_state` `[num_envs, H]`, or None for a feed-forward network."""
    if not network.rnn_size:
        return None
    return jnp.zeros((num_envs, network.rnn_size), jnp.float32)


def param_shapes(network: Network, obs: jax.Array | jax.ShapeDtypeStruct) -> Any:
    """The network's parameters for observations shaped like `obs` `[N, *obs_shape]`, as
    `jax.ShapeDtypeStruct` leaves: nothing is drawn or allocated."""
    key = jax.random.key(0)  # shapes only: the key's value does not matter
    return jax.eval_shape(lambda k: _init_modules(network, k, jnp.zeros(obs.shape)), key)


def init_bits_shapes(
    network: Network, obs: jax.Array | jax.ShapeDtypeStruct, words: int
) -> list[tuple[int, ...]]:
    """The uint32 bits `init_network_from_bits` takes: a module key `[words]`, then the
    orthogonal kernels' block (`orthogonal_bits_shape`) if the network declares any. Only
    the shape of `obs` is used."""
    kernels = _orthogonal_kernels(param_shapes(network, obs))
    if not kernels:
        return [(words,)]
    return [(words,), orthogonal_bits_shape([x.value.shape for x in kernels])]


def init_network_from_bits(
    network: Network, bits: Sequence[jax.Array], obs: jax.Array, like: jax.Array
) -> dict:
    """Parameters from example observations `obs` `[N, *obs_shape]` and the bits of
    `init_bits_shapes`: the modules' own initialisers (their key of `like`'s kind), then
    every `OrthogonalKernel` from `orthogonal_matrices_from_bits`."""
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
    rnn_state = initial_rnn_state(network, obs.shape[0])  # None: feed-forward
    return network.init(key, rnn_state, obs, first)


def _is_orthogonal(x: object) -> bool:
    return isinstance(x, OrthogonalKernel)


def _orthogonal_kernels(params: Any) -> list[OrthogonalKernel]:
    return [x for x in jax.tree.leaves(params, is_leaf=_is_orthogonal) if _is_orthogonal(x)]


def act(
    network: Network,
    params: Any,
    rnn_state: jax.Array | None,
    obs: jax.Array,
    first: jax.Array | None,
    with_value: bool = True,
) -> NetworkStep:
    """One step for observations `obs` `[N, *obs_shape]` (any batch shape), `first` `[N]`
    marking episode starts (where the carry restarts from zero; None: feed-forward, where it
    is unused): the new `rnn_state` `[N, H]` (None: feed-forward), the action distribution
    and, if `with_value`, the value `[N]`."""
    return network.apply(params, rnn_state, obs, first, with_value)


def value_after(
    network: Network, params: Any, rnn_state: jax.Array | None, obs: jax.Array
) -> jax.Array:
    """The values `act` gave for observations `[..., *obs_shape]` whose steps returned
    `rnn_state` `[..., H]` (None: feed-forward), computed for all of them at once."""
    return network.apply(params, rnn_state, obs, method="value_after")


def replay(network: Network, params: Any, batch: Batch) -> tuple[Distribution, jax.Array]:
    """The policy and values `act` gives over a batch's stored observations, shaped like
    `batch.value`: flat samples `[B]` in one pass (feed-forward), or sequences `[T, n]`
    replayed step by step from the carry `batch.rnn_state` `[n, H]` at their start (the carry
    restarting where `batch.first`)."""
    if batch.rnn_state is None:
        _, dist, value = act(network, params, None, batch.obs, batch.first)
        return dist, value

    def one_step(h: jax.Array, inputs: tuple[jax.Array, jax.Array]):
        h, dist, value = act(network, params, h, *inputs)
        if isinstance(dist, DiagGaussian):  # stacked per step, log_std must have the batch
            dist = dist._replace(log_std=jnp.broadcast_to(dist.log_std, dist.mean.shape))
        return h, (dist, value)

    _, (dist, value) = jax.lax.scan(one_step, batch.rnn_state, (batch.obs, batch.first))
    return dist, value


def make_network(config: PPOConfig, setup: EnvSetup, tuning: Tuning) -> Network:
    """The network `config` describes for `setup`'s spaces, with `tuning`'s kernel choices."""
    if config.network == "cnn" and len(setup.obs_shape) != 3:
        raise ConfigError(
            f"network 'cnn' needs image observations [H, W, C]; {setup.name} has {setup.obs_shape}"
        )
    return ActorCritic(
        action_dim=setup.action_dim,
        discrete=setup.discrete,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        obs_ndim=len(setup.obs_shape),
        gru_size=config.gru_size if config.recurrent else 0,
        conv=config.network == "cnn",
        weight_gradient_product=tuning.weight_gradient_product,
        column_log_softmax=tuning.column_log_softmax,
    )
