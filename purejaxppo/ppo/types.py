"""The types that travel between the PPO stages and out of the trainer: named state with its
shapes, never positional tuples. `[R, ...]` marks a run axis, `[T, N]` time x envs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.config import PPOConfig
from purejaxppo.envs.setup import EnvRunner
from purejaxppo.ppo.normalize import Normalizer, RunningStats


class Transition(NamedTuple):
    """A rollout of T steps in N envs, time-major.

    obs `[T, N, *obs_shape]` (raw, as the env returned it); action `[T, N]` (discrete) or
    `[T, N, D]` (continuous, the unclipped sample); the rest `[T, N]`. `next_value[t]` is the
    value of the observation that followed step t *before* any auto-reset
    (`info["final_observation"]`), so a truncated episode bootstraps from where it was cut.
    `episode_return` / `episode_length` describe the episode that ended at step t and are
    meaningful only where `terminated | truncated`.
    """

    obs: jax.Array
    first: jax.Array  # [T, N] bool: obs[t] is the first of an episode (rnn_state starts at 0)
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


class RolloutNoise(NamedTuple):
    """A rollout's randomness, drawn before its scan: `action` `[T, N, A]` float32 (Gumbel
    noise for A actions, or standard normal for A action dimensions) and `env_keys` `[T, N]`
    (one key per env step)."""

    action: jax.Array
    env_keys: jax.Array


class Batch(NamedTuple):
    """Samples for optimizer steps, taken from a rollout and its GAE.

    Feed-forward: flat samples `[B, ...]`, `first` and `rnn_state` None. Recurrent: whole env
    sequences `[T, n, ...]`, with `first` `[T, n]` and the GRU's carry at their start
    `rnn_state` `[n, H]`, replayed in order by the loss.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array
    first: jax.Array | None = None
    rnn_state: jax.Array | None = None


class LossInfo(NamedTuple):
    """Scalar diagnostics of one loss evaluation."""

    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array


class TrainState(NamedTuple):
    """Everything that carries from one update to the next."""

    params: Any
    opt_state: Any
    runner: EnvRunner
    rnn_state: jax.Array | None  # [N, H]: the GRU's carry in each env (None: feed-forward)
    norm: Normalizer  # observation / return statistics (carried even when switched off)
    key: jax.Array
    update: jax.Array  # int32, number of updates done


class Actors(NamedTuple):
    """What acting carries from one rollout to the next: N envs and the GRU's carry in each."""

    runner: EnvRunner
    rnn_state: jax.Array | None  # [N, H] (None: feed-forward)


class LearnerState(NamedTuple):
    """What the optimizer steps change: network params and the optimizer's state."""

    params: Any
    opt_state: Any


class Schedules(NamedTuple):
    """The scheduled hyperparameters of one update (float32 scalars)."""

    learning_rate: jax.Array
    ent_coef: jax.Array


class UpdateInfo(NamedTuple):
    """What `update_policy` reports: the loss diagnostics and the pre-clipping gradient norm,
    each averaged over the steps of the epochs kept, and the number of epochs kept (int32)."""

    loss: LossInfo
    grad_norm: jax.Array
    epochs: jax.Array


class Policy(NamedTuple):
    """What acting needs: network params and the frozen observation statistics (None when
    `normalize_obs` is off). Evaluation and export take this, not the whole `TrainState`."""

    params: Any
    obs_stats: RunningStats | None


def policy_of(config: PPOConfig, state: TrainState) -> Policy:
    """The policy a `TrainState` acts with (for one run or, batched, for R runs)."""
    return Policy(state.params, state.norm.obs if config.normalize_obs else None)


Metrics = NamedTuple(
    "Metrics",
    [
        ("episode_return", jax.Array),
        ("episode_length", jax.Array),
        ("episodes", jax.Array),
        *((name, jax.Array) for name in LossInfo._fields),  # the loss diagnostics, by name
        ("explained_variance", jax.Array),
        ("learning_rate", jax.Array),
        ("ent_coef", jax.Array),
        ("epochs", jax.Array),
        ("grad_norm", jax.Array),
    ],
)
Metrics.__doc__ = """Scalars per update (`[U]` after a scan; `[R, U]` for R runs).

`episode_return` / `episode_length` are means over the episodes that *ended* in that update,
NaN where `episodes == 0`; then `LossInfo`'s diagnostics under their own names; `epochs` is
the number of epochs kept (fewer than update_epochs after a target-KL stop)."""


METRIC_NAMES = Metrics._fields


# The dtype of each metric, on the device (`metrics_of`) and on the host: int32 counts (of
# episodes, of epochs kept), else float32.
METRIC_DTYPES: dict[str, type] = {
    name: np.int32 if name in ("episodes", "epochs") else np.float32 for name in Metrics._fields
}


def metrics_of(**values: Any) -> Metrics:
    """`Metrics` of one update from its scalars by name (every name, no other), each as its
    `METRIC_DTYPES` dtype."""
    named = Metrics(**values)._asdict()
    return Metrics(**{name: jnp.asarray(x, METRIC_DTYPES[name]) for name, x in named.items()})


def empty_metrics(num_runs: int) -> Metrics:
    """Metrics of zero updates: `[R, 0]` numpy arrays of the right dtypes."""
    return Metrics(*(np.zeros((num_runs, 0), METRIC_DTYPES[name]) for name in Metrics._fields))


class TrainOutput(NamedTuple):
    state: TrainState
    metrics: Metrics
