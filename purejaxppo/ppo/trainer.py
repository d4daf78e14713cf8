"""The trainer: `make_train(config)` returns `train(key, hyperparams) -> TrainOutput`.

`train` is init followed by `lax.scan(update_step)` over `num_updates`, and `update_step` is

    rollout -> gae -> update -> metrics

one top-level function per stage. `train` is pure: `jax.jit` compiles it once and
`jax.vmap` maps it over seeds (keys) and over `Hyperparams` (sweeps).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.environment import Environment

from purejaxppo.config import Hyperparams, PPOConfig
from purejaxppo.envs.setup import make_env, reset_envs_with_keys
from purejaxppo.metrics import mean_over_finished
from purejaxppo.ppo.gae import compute_gae
from purejaxppo.ppo.networks import (
    init_bits_shapes,
    init_network_from_bits,
    initial_rnn_state,
    make_network,
)
from purejaxppo.ppo.normalize import (
    Normalizer,
    init_normalizer,
    merge_stats,
    scale_rewards,
)
from purejaxppo.ppo.parts import TrainerParts
from purejaxppo.ppo.randomness import carried_key_from_bits, draw_bits, key_words, keys_from_bits
from purejaxppo.ppo.rollout import (
    collect_rollout,
    episode_ends,
    policy_input,
    rollout_noise_bit_shapes,
    rollout_noise_from_bits,
)
from purejaxppo.ppo.schedules import schedules_at
from purejaxppo.ppo.tuning import Tuning
from purejaxppo.ppo.types import (
    Actors,
    LearnerState,
    Metrics,
    RolloutNoise,
    Schedules,
    TrainOutput,
    TrainState,
    Transition,
    UpdateInfo,
    metrics_of,
    policy_of,
)
from purejaxppo.ppo.update import make_batch, make_optimizer, update_policy


class Trainer(TrainerParts):
    """The static parts of a run (`TrainerParts`: config, env, network and backend tuning)
    with its entry points. Call it as `train(key, hp)`; its methods take the arguments of the
    functions of the same name, after the trainer: `(hp, state, ...)`."""

    def __call__(self, key: jax.Array, hp: Hyperparams) -> TrainOutput:
        return train(self, key, hp)

    def init(self, key: jax.Array, hp: Hyperparams) -> TrainState:
        return init_state(self, key, hp)

    def update_step(self, hp: Hyperparams, state: TrainState) -> tuple[TrainState, Metrics]:
        return update_step(self, hp, state)

    def run_updates(
        self, hp: Hyperparams, state: TrainState, num_updates: int
    ) -> tuple[TrainState, Metrics]:
        return run_updates(self, hp, state, num_updates)

    def env_steps(self, updates: Any) -> np.ndarray:
        """Env steps consumed after `updates` updates, as int64 (no 32-bit overflow)."""
        return np.asarray(updates, dtype=np.int64) * self.config.batch_size


class UpdateRandomness(NamedTuple):
    """All the randomness of one update (`draw_update_randomness`)."""

    next_key: jax.Array  # the key the next update starts from (typed, or raw as the input)
    rollout: RolloutNoise  # action noise [T, N, A], env keys [T, N]
    epoch_keys: jax.Array  # [update_epochs]: each epoch's shuffle


def draw_update_randomness(trainer: TrainerParts, key: jax.Array) -> UpdateRandomness:
    """An update's randomness from `key` in one draw of random bits (`purejaxppo.ppo.randomness`):
    one threefry loop per update where separate splits and draws made five."""
    config, setup, words = trainer.config, trainer.env, key_words(key)
    shapes = [
        (words,),
        *rollout_noise_bit_shapes(setup, config.num_steps, config.num_envs, words),
        (config.update_epochs, words),
    ]
    next_bits, action_bits, env_key_bits, epoch_key_bits = draw_bits(key, shapes)
    return UpdateRandomness(
        next_key=carried_key_from_bits(next_bits, key),
        rollout=rollout_noise_from_bits(setup, action_bits, env_key_bits, key),
        epoch_keys=keys_from_bits(epoch_key_bits, key),
    )


def make_train(
    config: PPOConfig,
    env: Environment | None = None,
    env_params: Any = None,
    tuning: Tuning | None = None,
) -> Trainer:
    """Build the trainer for `config`; `env` overrides `config.env` with a gymnax instance.
    `tuning` defaults to `Tuning.for_backend` of the default backend: the one place the
    backend is read."""
    if tuning is None:
        tuning = Tuning.for_backend(jax.default_backend(), config.batch_size)
    setup = make_env(config.env if env is None else env, env_params)
    return Trainer(config, setup, make_network(config, setup, tuning), tuning)


def init_state(trainer: TrainerParts, key: jax.Array, hp: Hyperparams) -> TrainState:
    """Initialise network parameters, optimizer state and `num_envs` envs."""
    # One draw: the state's key, a key per env, the network's module key and kernel bits.
    words, num_envs = key_words(key), trainer.config.num_envs
    example_obs = jax.ShapeDtypeStruct((1, *trainer.env.obs_shape), jnp.float32)
    network_shapes = init_bits_shapes(trainer.network, example_obs, words)
    key_bits, env_key_bits, *network_bits = draw_bits(
        key, [(words,), (num_envs, words), *network_shapes]
    )
    runner = reset_envs_with_keys(trainer.env, keys_from_bits(env_key_bits, key))
    params = init_network_from_bits(trainer.network, network_bits, runner.obs[:1], like=key)
    opt_state = make_optimizer(hp, hp.learning_rate).init(params)
    norm = init_normalizer(trainer.env.obs_shape, trainer.config.num_envs)
    rnn_state = initial_rnn_state(trainer.network, trainer.config.num_envs)
    state_key = carried_key_from_bits(key_bits, key)  # typed, or raw as the caller's key
    zero = jnp.zeros((), jnp.int32)
    return TrainState(params, opt_state, runner, rnn_state, norm, state_key, zero)


def update_step(
    trainer: TrainerParts, hp: Hyperparams, state: TrainState
) -> tuple[TrainState, Metrics]:
    """One PPO update: rollout -> rewards -> gae -> update -> observation statistics -> metrics."""
    config = trainer.config
    randomness = draw_update_randomness(trainer, state.key)
    obs_stats = policy_of(config, state).obs_stats  # frozen until this update is done
    actors = Actors(state.runner, state.rnn_state)
    actors, transition = collect_rollout(
        trainer, state.params, actors, randomness.rollout, obs_stats
    )
    norm, reward = training_rewards(config, hp, state.norm, transition)
    advantage, target = transition_gae(config, hp, transition, reward)
    schedules = schedules_at(config, hp, state.update)
    seen = transition._replace(obs=policy_input(obs_stats, transition.obs))
    batch = make_batch(config, seen, advantage, target, state.rnn_state)
    learner = LearnerState(state.params, state.opt_state)
    learner, info = update_policy(trainer, hp, learner, batch, randomness.epoch_keys, schedules)
    norm = update_obs_stats(config, norm, transition.obs)
    metrics = summarize_update(transition, target, info, schedules)
    next_state = TrainState(
        learner.params,
        learner.opt_state,
        actors.runner,
        actors.rnn_state,
        norm,
        randomness.next_key,
        state.update + 1,
    )
    return next_state, metrics


def transition_gae(
    config: PPOConfig, hp: Hyperparams, transition: Transition, reward: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """GAE advantages and value targets `[T, N]` of the rollout, for the rewards `reward`."""
    advantage, target = compute_gae(
        reward,
        transition.value,
        transition.next_value,
        transition.terminated,
        transition.truncated,
        hp.gamma,
        hp.gae_lambda,
    )
    chex.assert_shape([advantage, target, transition.value], (config.num_steps, config.num_envs))
    return advantage, target


def training_rewards(
    config: PPOConfig, hp: Hyperparams, norm: Normalizer, transition: Transition
) -> tuple[Normalizer, jax.Array]:
    """The rewards `[T, N]` the learner sees: `reward_scale` times the env's, divided by the
    running std of the discounted return if `normalize_reward` is on."""
    reward = hp.reward_scale * transition.reward
    if config.normalize_reward:
        norm, reward = scale_rewards(norm, reward, episode_ends(transition), hp.gamma)
    return norm, reward


def update_obs_stats(config: PPOConfig, norm: Normalizer, obs: jax.Array) -> Normalizer:
    """Absorb the rollout's raw observations `[T, N, *obs_shape]` (if `normalize_obs`)."""
    if not config.normalize_obs:
        return norm
    return norm._replace(obs=merge_stats(norm.obs, obs.reshape((-1, *obs.shape[2:]))))


def summarize_update(
    transition: Transition, target: jax.Array, info: UpdateInfo, schedules: Schedules
) -> Metrics:
    """Reduce one update's `[T, N]` data to scalars."""
    ended = episode_ends(transition)
    residual_var = jnp.var(target - transition.value)
    explained_variance = 1.0 - residual_var / jnp.maximum(jnp.var(target), 1e-8)
    return metrics_of(
        episode_return=mean_over_finished(transition.episode_return, ended),
        episode_length=mean_over_finished(transition.episode_length, ended),
        episodes=jnp.sum(ended),
        **info.loss._asdict(),  # the loss diagnostics, by the same names
        explained_variance=explained_variance,
        learning_rate=schedules.learning_rate,
        ent_coef=schedules.ent_coef,
        epochs=info.epochs,
        grad_norm=info.grad_norm,
    )


def run_updates(
    trainer: TrainerParts, hp: Hyperparams, state: TrainState, num_updates: int
) -> tuple[TrainState, Metrics]:
    """`num_updates` update steps in one `lax.scan`; metrics are `[num_updates]`."""
    return jax.lax.scan(lambda s, _: update_step(trainer, hp, s), state, None, num_updates)


def train(trainer: TrainerParts, key: jax.Array, hp: Hyperparams) -> TrainOutput:
    """The whole run: init, then `config.num_updates` updates."""
    state = init_state(trainer, key, hp)
    state, metrics = run_updates(trainer, hp, state, trainer.config.num_updates)
    return TrainOutput(state, metrics)
