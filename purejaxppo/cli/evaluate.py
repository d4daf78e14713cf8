"""`purejaxppo eval RUN_DIR`: the newest checkpoint's policies, deterministic and sampled."""

from __future__ import annotations

import argparse
from typing import Any

from purejaxppo.cli.values import output_file, prepare_output_dir
from purejaxppo.errors import ConfigError
from purejaxppo.runs.spec import MAX_SEED, LoopOptions, RunSpec

MODES = (("deterministic", True), ("stochastic", False))


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate every run of the saved population; write eval.json and print a table."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must lie in 0..{MAX_SEED}")
    from purejaxppo.session import TrainSession, load_saved_run

    spec, loop = load_saved_run(args.run_dir)
    check_episodes_fit(spec, loop, args.episodes)
    out = output_file(args.out, args.run_dir / "eval.json", "eval.json")
    prepare_output_dir(out.parent)
    session = TrainSession.open(spec, loop, args.run_dir, resume=True, check_fits=False)
    rows = evaluation_rows(session, args.episodes, args.seed)

    from purejaxppo.outputs import console
    from purejaxppo.outputs.summary import write_json

    updates_done = session.updates_done
    document = {"run_dir": str(args.run_dir), "env": spec.config.env}
    document |= {"updates_done": updates_done, "episodes": args.episodes, "eval_seed": args.seed}
    write_json(out, document | {"runs": rows})
    console.print_eval(spec.config.env, updates_done, rows)
    print(f"wrote {out}")
    return 0


def check_episodes_fit(spec: RunSpec, loop: LoopOptions, episodes: int) -> None:
    """`--episodes` of every saved run fit in the memory of the devices the runs are spread
    over: from the saved spec alone, before the checkpoint is restored or anything compiles
    (the compiled program's own check would come only after both)."""
    from purejaxppo.envs.setup import make_env
    from purejaxppo.runs.memory_budget import check_evaluation_fits
    from purejaxppo.runs.placement import make_placement

    placement = make_placement(loop.devices)
    runs_per_device = placement.padded(spec.num_runs) // placement.num_devices
    env = make_env(spec.config.env)
    check_evaluation_fits(spec.config, env, runs_per_device, episodes, "--episodes")


def evaluation_rows(session: Any, episodes: int, seed: int) -> list[dict[str, Any]]:
    """Per run: its seed, swept setting and the summary of each mode's episodes."""
    import jax

    from purejaxppo.ppo.evaluate import summarize_eval
    from purejaxppo.ppo.types import policy_of
    from purejaxppo.runs.evaluation import evaluate_runs

    policy = policy_of(session.spec.config, session.restored.state)
    key = jax.random.key(seed)
    results = {
        mode: summarize_eval(
            evaluate_runs(
                session.trainer, policy, key, episodes, deterministic, placement=session.placement
            )
        )
        for mode, deterministic in MODES
    }
    population = session.population
    return [
        {"run": run, "seed": population.seeds[run], "setting": population.swept[run]}
        | {mode: results[mode][run] for mode, _ in MODES}
        for run in range(population.num_runs)
    ]
