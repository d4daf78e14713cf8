"""Actor-critic networks: separate policy and value towers with orthogonal initialisation.

Observations of any shape are flattened for the MLP torso; the CNN torso (for image-like
observations such as MinAtar's `[10, 10, C]`) applies one 3x3 convolution first.

Both networks act through one interface, so rollout, loss and evaluation serve both:

    step(rnn_state [N, H], obs [N, *obs_shape], first [N]) -> (rnn_state, distribution, value [N])

`first` marks the first observation of an episode, where the recurrent network starts from a
zero `rnn_state` (the GRU's carry). The feed-forward `ActorCritic` carries nothing
(`rnn_state` is None); `RecurrentActorCritic` embeds the observation, runs a GRU cell and
feeds its output to separate policy and value heads. Both take `Tuning`'s kernel choices as
module attributes (`make_network`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from purejaxppo.config import ConfigError, PPOConfig
from purejaxppo.envs.spec import EnvSpec
from purejaxppo.ppo.distributions import Categorical, DiagGaussian, Distribution
from purejaxppo.ppo.kernels import (
    dense_dot_general,
    orthogonal_bits_shape,
    orthogonal_matrices_from_bits,
)
from purejaxppo.ppo.randomness import draw_bits, key_words, keys_from_bits
from purejaxppo.ppo.tuning import Tuning

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
}


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


class ActorCritic(nn.Module):
    """Maps observations `[..., *obs_shape]` to an action distribution and a value `[...]`."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int]
    activation: str
    obs_ndim: int
    conv: bool = False
    weight_gradient_product: bool = False  # `Tuning.weight_gradient_product`
    column_log_softmax: bool = False  # `Tuning.column_log_softmax`

    def setup(self) -> None:
        tower = dict(hidden_sizes=self.hidden_sizes, obs_ndim=self.obs_ndim, conv=self.conv)
        self.actor = _tower(self, out_features=self.action_dim, out_scale=0.01, **tower)
        self.critic = _tower(self, out_features=1, out_scale=1.0, **tower)
        if not self.discrete:
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))

    def __call__(self, obs: jax.Array) -> tuple[Distribution, jax.Array]:
        return self.policy(obs), self.value(obs)

    def policy(self, obs: jax.Array) -> Distribution:
        return _distribution(self, self.actor(obs))

    def value(self, obs: jax.Array) -> jax.Array:
        return self.critic(obs)[..., 0]

    def step(
        self, rnn_state: None, obs: jax.Array, first: jax.Array
    ) -> tuple[None, Distribution, jax.Array]:
        """The common acting interface; a feed-forward network carries no `rnn_state`."""
        dist, value = self(obs)
        return rnn_state, dist, value

    def step_value(self, rnn_state: None, obs: jax.Array, first: jax.Array) -> jax.Array:
        return self.value(obs)

    def policy_step(
        self, rnn_state: None, obs: jax.Array, first: jax.Array
    ) -> tuple[None, Distribution]:
        """`step` without the value: what acting needs."""
        return rnn_state, self.policy(obs)

    def value_after(self, rnn_state: None, obs: jax.Array) -> jax.Array:
        """The value `step` returned for `obs`, given the `rnn_state` it returned with it."""
        return self.value(obs)

    @property
    def rnn_size(self) -> int:
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
    weight_gradient_product: bool = False  # `Tuning.weight_gradient_product`
    column_log_softmax: bool = False  # `Tuning.column_log_softmax`

    def setup(self) -> None:
        self.embed = _tower(
            self,
            hidden_sizes=(),
            out_features=self.hidden_sizes[0],
            out_scale=math.sqrt(2),
            obs_ndim=self.obs_ndim,
            conv=self.conv,
        )
        # Its recurrent kernels join the network's one orthogonal draw (flax's default is a
        # LAPACK QR each); its input kernels keep flax's LeCun normal.
        self.cell = nn.GRUCell(self.gru_size, recurrent_kernel_init=orthogonal_kernel(1.0))
        head = dict(hidden_sizes=self.hidden_sizes[1:], obs_ndim=1)
        self.actor = _tower(self, out_features=self.action_dim, out_scale=0.01, **head)
        self.critic = _tower(self, out_features=1, out_scale=1.0, **head)
        if not self.discrete:
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))

    def __call__(
        self, rnn_state: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution, jax.Array]:
        return self.step(rnn_state, obs, first)

    def next_rnn_state(self, rnn_state: jax.Array, obs: jax.Array, first: jax.Array) -> jax.Array:
        """The GRU's output for `obs` `[..., *obs_shape]` after `rnn_state` `[..., H]` (zeroed
        where `first` `[...]`): the new carry, which is also what the heads read."""
        rnn_state = jnp.where(first[..., None], 0.0, rnn_state)
        features = _ACTIVATIONS[self.activation](self.embed(obs))
        rnn_state, _ = self.cell(rnn_state, features)
        return rnn_state

    def step(
        self, rnn_state: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution, jax.Array]:
        rnn_state, dist = self.policy_step(rnn_state, obs, first)
        return rnn_state, dist, self.value_after(rnn_state, obs)

    def policy_step(
        self, rnn_state: jax.Array, obs: jax.Array, first: jax.Array
    ) -> tuple[jax.Array, Distribution]:
        """`step` without the value: what acting needs."""
        rnn_state = self.next_rnn_state(rnn_state, obs, first)
        return rnn_state, _distribution(self, self.actor(rnn_state))

    def value_after(self, rnn_state: jax.Array, obs: jax.Array) -> jax.Array:
        """The value `step` returned for `obs`, given the `rnn_state` it returned with it."""
        return self.critic(rnn_state)[..., 0]

    def step_value(self, rnn_state: jax.Array, obs: jax.Array, first: jax.Array) -> jax.Array:
        return self.value_after(self.next_rnn_state(rnn_state, obs, first), obs)

    @property
    def rnn_size(self) -> int:
        return self.gru_size


Network = ActorCritic | RecurrentActorCritic


def initial_rnn_state(network: Network, num_envs: int) -> jax.Array | None:
    """A zero `rnn_state` `[num_envs, H]`, or None for a feed-forward network."""
    if not network.rnn_size:
        return None
    return jnp.zeros((num_envs, network.rnn_size), jnp.float32)


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
    rnn_state = initial_rnn_state(network, obs.shape[0])  # None: feed-forward
    return network.init(key, rnn_state, obs, first, method="step")


def _is_orthogonal(x: object) -> bool:
    return isinstance(x, OrthogonalKernel)


def _orthogonal_kernels(params: Any) -> list[OrthogonalKernel]:
    return [x for x in jax.tree.leaves(params, is_leaf=_is_orthogonal) if _is_orthogonal(x)]


def act(
    network: Network, params: dict, rnn_state: jax.Array | None, obs: jax.Array, first: jax.Array
) -> tuple[jax.Array | None, Distribution, jax.Array]:
    """One step for a batch `[N]`: the new `rnn_state` `[N, H]`, the action distribution and
    the value `[N]`."""
    return network.apply(params, rnn_state, obs, first, method="step")


def act_without_value(
    network: Network, params: dict, rnn_state: jax.Array | None, obs: jax.Array, first: jax.Array
) -> tuple[jax.Array | None, Distribution]:
    """`act` without the critic, for observations `[N, *obs_shape]` and `first` `[N]`: the
    new `rnn_state` `[N, H]` (None: feed-forward) and the action distribution (batch `[N]`)."""
    return network.apply(params, rnn_state, obs, first, method="policy_step")


def values_of(
    network: Network, params: dict, rnn_state: jax.Array | None, obs: jax.Array
) -> jax.Array:
    """The values `act` gives for observations `[..., *obs_shape]` whose steps returned
    `rnn_state` `[..., H]` (None: feed-forward), computed for all of them at once."""
    return network.apply(params, rnn_state, obs, method="value_after")


def unroll(
    network: Network, params: dict, rnn_state: jax.Array, obs: jax.Array, first: jax.Array
) -> tuple[Distribution, jax.Array]:
    """Replay sequences: `obs` `[T, n, *obs_shape]` and `first` `[T, n]` from `rnn_state`
    `[n, H]`; returns the distributions (batch `[T, n]`) and values `[T, n]`."""

    def one_step(h: jax.Array, inputs: tuple[jax.Array, jax.Array]):
        h, dist, value = act(network, params, h, *inputs)
        if isinstance(dist, DiagGaussian):  # stacked per step, log_std must have the batch
            dist = dist._replace(log_std=jnp.broadcast_to(dist.log_std, dist.mean.shape))
        return h, (dist, value)

    _, (dist, value) = jax.lax.scan(one_step, rnn_state, (obs, first))
    return dist, value


def make_network(config: PPOConfig, spec: EnvSpec, tuning: Tuning) -> Network:
    """The network `config` describes for `spec`'s spaces, with `tuning`'s kernel choices."""
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
        weight_gradient_product=tuning.weight_gradient_product,
        column_log_softmax=tuning.column_log_softmax,
    )
    if config.recurrent:
        return RecurrentActorCritic(gru_size=config.gru_size, **common)
    return ActorCritic(**common)
