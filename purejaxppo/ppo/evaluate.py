"""Evaluation: play each of E fresh envs for exactly one episode with a trained policy.

`evaluate_policy` is pure and jittable (one run, unbatched params); the run layer compiles it
for a population (`purejaxppo.runs.evaluation.evaluate_runs`); `summarize_eval` reduces the
result per run on the host.

Actions go through `step_envs`, so continuous actions are clipped to the action bounds
exactly as in training (`envs.env_action`). Each env is reset once; its first episode's
return and length are recorded at its first `terminated | truncated`, and whatever it plays
after the auto-reset is masked out. The loop stops when every env is done or after
`max_steps` steps; an env still running then has `finished == False` and holds the return
and length of its episode so far.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.config import is_int
from purejaxppo.envs.setup import EnvRunner, EnvSetup, reset_envs, step_envs
from purejaxppo.errors import ConfigError
from purejaxppo.metrics import mean_over_finished
from purejaxppo.ppo.networks import act, initial_rnn_state
from purejaxppo.ppo.parts import TrainerParts
from purejaxppo.ppo.rollout import policy_input
from purejaxppo.ppo.types import Policy


class EvalResult(NamedTuple):
    """One episode per env: `[E]` for one run (`evaluate_policy`), `[R, E]` for R runs.

    `returns` (float32) and `lengths` (int32) are the first episode's undiscounted return and
    step count; where `finished` is False the episode was cut by `max_steps` and they are
    those of the partial episode.
    """

    returns: Any
    lengths: Any
    finished: Any


class FreshEpisodes(NamedTuple):
    """E freshly reset envs to play one episode each (`fresh_episodes`)."""

    runner: EnvRunner
    key: jax.Array  # the key that plays them
    max_steps: int  # the step limit (static)


class _Loop(NamedTuple):
    """The carry of the evaluation loop; all `[E]` except `step` and `key`."""

    step: jax.Array  # int32 scalar, steps taken so far
    key: jax.Array
    runner: EnvRunner
    rnn_state: jax.Array | None  # [E, H] the GRU's carry (None: feed-forward)
    done: jax.Array  # bool: this env's first episode has ended
    returns: jax.Array
    lengths: jax.Array


def default_max_steps(setup: EnvSetup) -> int | None:
    """The env's time limit (`env_params.max_steps_in_episode`), or None if it has none."""
    limit = getattr(setup.params, "max_steps_in_episode", None)
    return None if limit is None else int(limit)


def resolve_max_steps(setup: EnvSetup, max_steps: int | None) -> int:
    """`max_steps`, defaulting to the env's time limit; `ConfigError` if neither exists."""
    if max_steps is None:
        max_steps = default_max_steps(setup)
        if max_steps is None:
            raise ConfigError(
                f"{setup.name} has no time limit (env_params.max_steps_in_episode); "
                "pass max_steps to bound the evaluation"
            )
    check_positive_int("max_steps", max_steps)
    return int(max_steps)


def check_num_episodes(num_episodes: int) -> None:
    """A `ConfigError` naming `num_episodes` unless it is a positive integer."""
    check_positive_int("num_episodes", num_episodes)


def check_positive_int(name: str, value: Any) -> None:
    """A `ConfigError` naming `name` unless `value` is a positive integer (not a bool)."""
    if not is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def as_policy(policy: Policy | Any) -> Policy:
    """A `Policy` as is; bare network params as a policy without observation statistics."""
    return policy if isinstance(policy, Policy) else Policy(policy, None)


def select_action(
    trainer: TrainerParts,
    policy: Policy,
    rnn_state: jax.Array | None,
    obs: jax.Array,
    first: jax.Array,
    key: jax.Array,
    deterministic: bool,
) -> tuple[jax.Array, jax.Array]:
    """The network's `rnn_state` `[E, H]` after `obs` `[E, *obs_shape]` (normalised with the
    policy's frozen training statistics if it has them; `first` `[E]` marks episode starts),
    and actions `[E]` (discrete) or `[E, D]` (continuous, unclipped): the mode or a sample."""
    x = policy_input(policy.obs_stats, obs)
    rnn_state, dist, _ = act(trainer.network, policy.params, rnn_state, x, first, with_value=False)
    return rnn_state, dist.mode() if deterministic else dist.sample(key)


def play_first_episodes(
    trainer: TrainerParts, policy: Policy | Any, episodes: FreshEpisodes, deterministic: bool
) -> EvalResult:
    """Play the E envs of `episodes` until each ends its first episode.

    Returns an `EvalResult` of `[E]` arrays. The `lax.while_loop` stops once all envs are
    done or after `episodes.max_steps` steps.
    """
    policy = as_policy(policy)

    def running(loop: _Loop) -> jax.Array:
        return (loop.step < episodes.max_steps) & ~jnp.all(loop.done)

    def one_step(loop: _Loop) -> _Loop:
        return play_step(trainer, policy, deterministic, loop)[0]

    end = jax.lax.while_loop(running, one_step, start_loop(trainer, episodes))
    return loop_result(end)


def play_step(
    trainer: TrainerParts, policy: Policy, deterministic: bool, loop: _Loop
) -> tuple[_Loop, tuple[Any, jax.Array, jax.Array]]:
    """One step of every env: the next loop and what the step saw, `(env_state before it,
    action [E] or [E, D], reward [E])`."""
    num_envs = loop.runner.obs.shape[0]
    key, key_act, key_env = jax.random.split(loop.key, 3)
    first = loop.runner.episode_length == 0
    rnn_state, action = select_action(
        trainer, policy, loop.rnn_state, loop.runner.obs, first, key_act, deterministic
    )
    env_keys = jax.random.split(key_env, num_envs)
    runner, step = step_envs(trainer.env, env_keys, loop.runner, action)
    ended = (step.terminated | step.truncated) & ~loop.done
    after = _Loop(
        step=loop.step + 1,
        key=key,
        runner=runner,
        rnn_state=rnn_state,
        done=loop.done | ended,
        returns=jnp.where(ended, step.episode_return, loop.returns),
        lengths=jnp.where(ended, step.episode_length, loop.lengths),
    )
    return after, (loop.runner.env_state, action, step.reward)


def start_loop(trainer: TrainerParts, episodes: FreshEpisodes) -> _Loop:
    """The loop's carry before the first step of the E envs of `episodes`."""
    num_envs = episodes.runner.obs.shape[0]
    chex.assert_shape(episodes.runner.obs, (num_envs, *trainer.env.obs_shape))
    return _Loop(
        step=jnp.zeros((), jnp.int32),
        key=episodes.key,
        runner=episodes.runner,
        rnn_state=initial_rnn_state(trainer.network, num_envs),
        done=jnp.zeros((num_envs,), bool),
        returns=jnp.zeros((num_envs,), jnp.float32),
        lengths=jnp.zeros((num_envs,), jnp.int32),
    )


def loop_result(end: _Loop) -> EvalResult:
    """The first episodes' results from the loop's last carry."""
    # An env not done has never reset, so its runner holds its first (partial) episode.
    result = EvalResult(
        returns=jnp.where(end.done, end.returns, end.runner.episode_return),
        lengths=jnp.where(end.done, end.lengths, end.runner.episode_length),
        finished=end.done,
    )
    chex.assert_shape(list(result), (end.done.shape[0],))
    return result


class EpisodeRecord(NamedTuple):
    """E episodes played side by side for T = `max_steps` steps, for drawing them: per step
    the env state before it (`env_states`, leaves `[T, E, ...]`), the `actions` (`[T, E]` or
    `[T, E, D]`) and the `rewards` `[T, E]`; `result` holds each env's first episode (`[E]`).
    Steps `t < result.lengths[e]` are env e's first episode; later ones are to be ignored."""

    env_states: Any
    actions: jax.Array
    rewards: jax.Array
    result: EvalResult


def record_first_episodes(
    trainer: TrainerParts, policy: Policy | Any, episodes: FreshEpisodes, deterministic: bool
) -> EpisodeRecord:
    """`play_first_episodes`'s episodes (the same `episodes` give the same ones), with every
    step's env state kept: a `lax.scan` over all `episodes.max_steps` steps. Pure and
    jittable with `trainer` and `deterministic` static."""
    policy = as_policy(policy)

    def one_step(loop: _Loop, _: None) -> tuple[_Loop, tuple[Any, jax.Array, jax.Array]]:
        return play_step(trainer, policy, deterministic, loop)

    end, (states, actions, rewards) = jax.lax.scan(
        one_step, start_loop(trainer, episodes), None, length=episodes.max_steps
    )
    chex.assert_shape(rewards, (episodes.max_steps, episodes.runner.obs.shape[0]))
    return EpisodeRecord(states, actions, rewards, loop_result(end))


def evaluate_policy(
    trainer: TrainerParts,
    policy: Policy | Any,
    key: jax.Array,
    num_episodes: int,
    deterministic: bool,
    max_steps: int | None = None,
) -> EvalResult:
    """Evaluate one run's policy (no run axis) on `num_episodes` envs in parallel.

    `policy` is a `Policy` (`train.policy_of(config, state)`: params and, with
    `normalize_obs`, the frozen observation statistics) or bare network params.

    Pure and jittable with `trainer`, `num_episodes`, `deterministic` and `max_steps` static.
    `deterministic` acts with the distribution's mode (argmax / mean), else samples.
    `max_steps` defaults to the env's time limit. Returns an `EvalResult` of `[E]` arrays,
    E = `num_episodes`.
    """
    episodes = fresh_episodes(trainer, key, num_episodes, max_steps)
    return play_first_episodes(trainer, policy, episodes, deterministic)


def fresh_episodes(
    trainer: TrainerParts, key: jax.Array, num_episodes: int, max_steps: int | None = None
) -> FreshEpisodes:
    """`num_episodes` freshly reset envs, the key that plays them and the checked step
    limit (default: the env's time limit); the same `key` gives the same episodes."""
    check_num_episodes(num_episodes)
    max_steps = resolve_max_steps(trainer.env, max_steps)
    key_reset, key_play = jax.random.split(key)
    return FreshEpisodes(reset_envs(trainer.env, key_reset, num_episodes), key_play, max_steps)


def summarize_eval(result: EvalResult) -> list[dict[str, float | int]]:
    """Per run: return mean/std/min/max and mean length over its *finished* episodes.

    `result` holds `[R, E]` arrays (or `[E]` for one run, treated as R = 1). A run with no
    finished episode gets NaN statistics. Keys: `return_mean`, `return_std`, `return_min`,
    `return_max`, `length_mean`, `episodes_finished`, `episodes`.
    """
    returns = np.atleast_2d(np.asarray(result.returns, np.float64))
    lengths = np.atleast_2d(np.asarray(result.lengths, np.float64))
    finished = np.atleast_2d(np.asarray(result.finished, bool))
    if not returns.shape == lengths.shape == finished.shape:
        raise ValueError(
            f"EvalResult fields differ in shape: {returns.shape}, {lengths.shape}, {finished.shape}"
        )
    return_means = mean_over_finished(returns, finished, axis=-1)
    length_means = mean_over_finished(lengths, finished, axis=-1)
    summaries = []
    for run, (ret, fin) in enumerate(zip(returns, finished, strict=True)):
        done_returns = ret[fin]
        any_done = done_returns.size > 0
        summaries.append(
            {
                "return_mean": float(return_means[run]),
                "return_std": float(done_returns.std()) if any_done else float("nan"),
                "return_min": float(done_returns.min()) if any_done else float("nan"),
                "return_max": float(done_returns.max()) if any_done else float("nan"),
                "length_mean": float(length_means[run]),
                "episodes_finished": int(fin.sum()),
                "episodes": int(fin.size),
            }
        )
    return summaries
