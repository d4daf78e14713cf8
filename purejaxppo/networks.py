"""Actor-critic networks: separate policy and value towers with orthogonal initialisation.

Observations of any shape are flattened for the MLP torso; the CNN torso (for image-like
observations such as MinAtar's `[10, 10, C]`) applies one 3x3 convolution first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from purejaxppo.config import ConfigError, PPOConfig
from purejaxppo.distributions import Categorical, DiagGaussian, Distribution
from purejaxppo.envs import EnvSpec

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
}


def orthogonal_init(scale: float = 1.0) -> Callable[..., jax.Array]:
    """Initializer: a Haar-random orthogonal matrix times `scale`, by Gram-Schmidt in jnp.

    The shape is read as `[prod(shape[:-1]), shape[-1]]`; the smaller side is orthonormal.
    Same distribution as `flax.linen.initializers.orthogonal`, but without LAPACK's QR: under
    `vmap` over seeds that QR becomes one batched LAPACK call, which jaxlib 0.10 splits over
    its intra-op thread pool and which deadlocks intermittently on a 2-core CPU.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        rows, cols = math.prod(shape[:-1]), shape[-1]
        gaussian = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
        q = orthonormal_columns(gaussian)
        q = q if rows >= cols else q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


def orthonormal_columns(a: jax.Array) -> jax.Array:
    """Q of the QR decomposition of `a` `[m, k]` (m >= k) with R's diagonal positive.

    Classical Gram-Schmidt, each column orthogonalised twice (enough in float32)."""

    def add_column(j: jax.Array, q: jax.Array) -> jax.Array:
        v = a[:, j]
        for _ in range(2):
            v = v - q @ (q.T @ v)  # columns not yet set are zero and project nothing
        return q.at[:, j].set(v / jnp.sqrt(jnp.sum(v * v)))

    return jax.lax.fori_loop(0, a.shape[1], add_column, jnp.zeros_like(a))


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=orthogonal_init(scale))


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
            x = nn.relu(nn.Conv(16, (3, 3), kernel_init=orthogonal_init(math.sqrt(2)))(x))
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


def make_network(config: PPOConfig, spec: EnvSpec) -> ActorCritic:
    if config.network == "cnn" and len(spec.obs_shape) != 3:
        raise ConfigError(
            f"network 'cnn' needs image observations [H, W, C]; {spec.name} has {spec.obs_shape}"
        )
    return ActorCritic(
        action_dim=spec.action_dim,
        discrete=spec.discrete,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        obs_ndim=len(spec.obs_shape),
        conv=config.network == "cnn",
    )
