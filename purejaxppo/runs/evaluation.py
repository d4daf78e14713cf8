"""Evaluating R runs' policies in one compiled program.

`evaluate_runs` compiles the core's per-run `evaluate_policy` for the run axis the way every
population program is compiled (`compile_program` of a `trainer_program`: the trainer's
backend tuning, the placement's `vmap` or `shard_map`, the memory check), so evaluation
spreads over the same devices as training. Programs are kept per (trainer, placement,
episodes, mode, step limit, argument shapes), so a periodic evaluation compiles once per
session.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.ppo.evaluate import (
    EvalResult,
    as_policy,
    check_num_episodes,
    evaluate_policy,
    resolve_max_steps,
)
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import Policy
from purejaxppo.runs.compile import CompiledRuns, compile_program, trainer_program
from purejaxppo.runs.placement import LOCAL_RUNS, Placement, place_runs, run_count, runs_to_host

KEPT_PROGRAMS = 16
"""How many compiled evaluation programs are kept (the oldest is dropped first)."""

_compiled: dict[tuple[Any, ...], CompiledRuns] = {}


def evaluate_runs(
    trainer: Trainer,
    policy_r: Policy | Any,
    key: jax.Array,
    num_episodes: int,
    deterministic: bool,
    max_steps: int | None = None,
    placement: Placement = LOCAL_RUNS,
) -> EvalResult:
    """`evaluate_policy` for each of R runs (a `Policy` or params whose leaves are
    `[R, ...]`, e.g. `TrainSession.policies(state)`), in one program over `placement`.

    Run r uses key `jax.random.split(key, R)[r]`. Returns an `EvalResult` of numpy `[R, E]`
    arrays, E = `num_episodes`. `max_steps` defaults to the env's time limit.
    """
    check_num_episodes(num_episodes)
    settings = (int(num_episodes), bool(deterministic), resolve_max_steps(trainer.env, max_steps))
    policy_r = as_policy(policy_r)
    num_runs = policy_run_count(policy_r)
    args = place_runs(placement, (policy_r, jax.random.split(key, num_runs)), num_runs)
    program = compiled_evaluation(trainer, placement, settings, args).program
    result = runs_to_host(placement, program(*args), num_runs)
    return EvalResult(*(np.asarray(field) for field in result))


def policy_run_count(policy_r: Policy) -> int:
    """R, the leading run axis every leaf of `policy_r` shares (else a `ConfigError`)."""
    try:
        return run_count(policy_r)
    except ValueError as error:
        raise ConfigError(
            f"params_R must have a leading run axis [R] on every leaf: {error}"
        ) from None


def compiled_evaluation(
    trainer: Trainer, placement: Placement, settings: tuple[int, bool, int], args: Any
) -> CompiledRuns:
    """The evaluation program for `settings` (episodes, deterministic, max_steps) and the
    shapes of `args` (placed policies and keys), compiled the first time it is asked for."""
    shapes = tuple((np.shape(leaf), leaf.dtype) for leaf in jax.tree.leaves(args))
    cache_key = (trainer, placement, settings, jax.tree.structure(args), shapes)
    if cache_key not in _compiled:
        num_episodes, deterministic, max_steps = settings

        def one_run(policy: Policy, key: jax.Array) -> EvalResult:
            return evaluate_policy(trainer, policy, key, num_episodes, deterministic, max_steps)

        if len(_compiled) >= KEPT_PROGRAMS:
            _compiled.pop(next(iter(_compiled)))
        _compiled[cache_key] = compile_program(
            trainer_program(trainer, one_run, placement),
            args,
            compiler_options=trainer.tuning.compiler_options_dict(),
        )
    return _compiled[cache_key]
