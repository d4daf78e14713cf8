"""`purejaxppo train`: parse -> open a session -> default hooks -> run under signals -> exit
status. Everything that can be wrong with the input is found before compiling."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from purejaxppo.cli.exits import EXIT_NAN, EXIT_WRITE
from purejaxppo.cli.values import (
    enable_compilation_cache,
    given_pbt,
    parse_search,
    parse_sweep,
    source_spec,
    split_assignment,
    with_settings,
)
from purejaxppo.errors import ConfigError
from purejaxppo.runs.spec import LoopOptions, RunSpec
from purejaxppo.runs.stop import StopOnSignals

# Flags that describe the runs: `--resume` takes them from the checkpoint instead.
RESUME_CONFLICTS = (
    "preset", "env", "config", "num_seeds", "num_envs", "seed", "total_timesteps", "out",
    "pbt_every", "pbt_fraction", "pbt_perturb", "pbt_fitness", "replay_best",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """A parsed and checked `train` command."""

    spec: RunSpec
    loop: LoopOptions
    out: Path
    resume: bool = False


def resolve_train_request(args: argparse.Namespace) -> TrainRequest:
    """The runs, loop options and output directory the arguments ask for (ConfigError on any
    bad input); with `--resume`, the saved ones but for the loop options given again."""
    return locate_request(args, *described_runs(args))


def described_runs(args: argparse.Namespace) -> tuple[RunSpec | None, dict[str, Any]]:
    """Every check of the arguments alone, without jax: the runs they describe (None with
    `--resume`, whose runs are saved) and the loop options given."""
    given = given_loop_options(args)
    if args.resume is not None:
        check_resume_conflicts(args)
        return None, given
    spec = with_settings(source_spec(args), args.set, args.total_timesteps, args.num_envs)
    sweep = parse_sweep(args.sweep) if args.sweep else spec.sweep
    search = parse_search(args.search) if args.search else spec.search
    set_names = {split_assignment(item, "--set")[0] for item in args.set}
    for kind, names in (("swept", sweep), ("searched", search)):
        both = sorted(set_names & set(names))
        if both:
            raise ConfigError(f"{both[0]} is both set (--set) and {kind}: drop one of them")
    if args.num_seeds is not None and args.num_seeds <= 0:
        raise ConfigError(f"--num-seeds must be a positive integer, got {args.num_seeds}")
    seed = spec.seed if args.seed is None else args.seed
    num_seeds = spec.num_seeds if args.num_seeds is None else args.num_seeds
    pbt = given_pbt(args, spec.strategy)
    if pbt.enabled and pbt.fitness == "eval" and not LoopOptions(**given).eval_every:
        raise ConfigError("--pbt-fitness eval ranks by the evaluation: turn on --eval-every")
    spec = dataclasses.replace(
        spec, seed=seed, num_seeds=num_seeds, sweep=sweep, search=search, strategy=pbt
    )
    return spec, given


def locate_request(
    args: argparse.Namespace, spec: RunSpec | None, given: dict[str, Any]
) -> TrainRequest:
    """The request of `described_runs`' runs: with its output directory (free of another
    run), or the saved run of `--resume`."""
    if spec is None:
        return resume_request(args, given)
    return TrainRequest(spec, LoopOptions(**given), output_dir(args.out, spec.name))


def given_loop_options(args: argparse.Namespace) -> dict[str, Any]:
    """The loop options given on the command line (checked by `LoopOptions`)."""
    given = {
        "chunk_updates": args.chunk_updates,
        "checkpoint_every": args.checkpoint_every,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "tensorboard": args.tensorboard or None,
        "render_every": args.render_every,
        "wandb_project": args.wandb,
        "wandb_group": args.wandb_group,
        "wandb_name": args.wandb_name,
        "progress": False if args.no_progress else None,
        "devices": args.devices,
    }
    given = {name: value for name, value in given.items() if value is not None}
    LoopOptions(**given)  # each checked now, before a checkpoint is read
    return given


def output_dir(out: Path | None, name: str) -> Path:
    """`--out`, or `runs/<name>-<time>`; never a directory that holds a checkpointed run."""
    from purejaxppo.outputs.checkpoint import holds_checkpoint
    from purejaxppo.outputs.run_lock import refuse_if_in_use
    from purejaxppo.runs.processes import several_processes

    if out is None and several_processes():
        raise ConfigError("a run of several processes needs --out (the same directory for all)")
    out = out or Path("runs") / f"{name.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    refuse_if_in_use(out)  # a run training into it is named first
    if holds_checkpoint(out):
        raise ConfigError(
            f"{out} already holds a checkpointed run: --resume {out}, or another --out"
        )
    return out


def check_env_and_memory(spec: RunSpec, loop: LoopOptions) -> None:
    """The env exists and the population fits in memory: refused before the run directory
    is locked and before the checkpoint library is loaded or the trainer built (the session
    is then opened without checking again)."""
    from purejaxppo.envs.setup import make_env
    from purejaxppo.runs.memory_budget import check_population_fits
    from purejaxppo.runs.placement import make_placement

    env = make_env(spec.config.env)  # an unknown env is refused here
    episodes = loop.eval_episodes if loop.eval_every else 0
    check_population_fits(spec.config, env, spec.num_runs, make_placement(loop.devices), episodes)


def check_resume_conflicts(args: argparse.Namespace) -> None:
    """`--resume` takes the runs from its checkpoint: no flag may describe them again."""
    conflicts = [
        f"--{n.replace('_', '-')}" for n in RESUME_CONFLICTS if getattr(args, n) is not None
    ]
    conflicts += [flag for flag in ("--set", "--sweep", "--search") if getattr(args, flag[2:])]
    if conflicts:
        raise ConfigError(
            f"--resume continues a run with its saved settings; drop {', '.join(conflicts)}"
        )


def resume_request(args: argparse.Namespace, given: dict[str, Any]) -> TrainRequest:
    """The runs saved with the newest checkpoint in `args.resume`."""
    from purejaxppo.outputs.run_lock import refuse_if_in_use
    from purejaxppo.session import load_saved_run

    check_resume_conflicts(args)
    refuse_if_in_use(args.resume)  # before its checkpoint, which a training run may not have yet
    spec, saved_loop = load_saved_run(args.resume)
    return TrainRequest(spec, saved_loop.replace(**given), args.resume, resume=True)


def run_train(args: argparse.Namespace, argv: Sequence[str], stop: StopOnSignals) -> int:
    """Train in chunks with the default hooks (progress, metrics.csv, TensorBoard, periodic
    evaluation and checkpoints, config/summary/plot), the run directory locked for this run
    alone; `stop.requested()` (SIGINT/SIGTERM) stops at a chunk boundary with a checkpoint."""
    spec, given = described_runs(args)  # bad arguments are refused before jax is imported
    from purejaxppo.runs.processes import initialize_distributed

    # Before anything imports gymnax, whose import starts the XLA backend.
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    # Before anything compiles: gymnax's import does, and the cache is set up at the first.
    enable_compilation_cache(args.compilation_cache)
    if spec is not None:
        check_env_and_memory(spec, LoopOptions(**given))
    request = locate_request(args, spec, given)
    from purejaxppo.outputs.hooks import default_hooks
    from purejaxppo.outputs.logs import check_sink_extras

    check_sink_extras(request.loop)  # the install line before a run directory is made
    from purejaxppo.outputs.checkpoint import SaveError
    from purejaxppo.outputs.run_lock import hold_run_dir
    from purejaxppo.runs.processes import every_process_agrees, several_processes
    from purejaxppo.session import WRITE_FAILED, TrainSession

    process_0 = process_index() == 0
    agree = every_process_agrees if several_processes() else None
    with hold_run_dir(request.out, "train", takes_lock=process_0, agree=agree):
        session = TrainSession.open(
            request.spec, request.loop, request.out, resume=request.resume,
            check_fits=request.resume,  # a fresh run's fit was checked before the lock
        )  # fmt: skip
        if session.finished:
            print(
                f"{request.out}: all {session.num_updates} updates are done, nothing to "
                f"train (evaluate it with: purejaxppo eval {request.out})"
            )
            return 0
        hooks = [Announce(), *default_hooks(session, request.out, argv)]
        try:
            run = session.run(hooks, stop.requested)
        except (SaveError, OSError) as error:
            return write_failed(session, error)
        if run.stop_code == WRITE_FAILED:  # another process could not write
            return write_failed(session, None) if process_0 else EXIT_WRITE
    return exit_status(session, run, process_0)


def process_index() -> int:
    import jax

    return jax.process_index()


def write_failed(session: Any, error: Exception | None) -> int:
    """A save or a file write failed (`error`, on this process; None: on another): one line
    with the cause, the newest complete checkpoint and how to go on from it; exit status 4.
    The process that met the error says it, whichever it is."""
    from purejaxppo.cli.exits import write_failure
    from purejaxppo.outputs.checkpoint import SaveError, checkpoint_dir, latest_updates

    saved = isinstance(error, SaveError)  # its text names the newest checkpoint already
    if error is None:
        text = "a write failed on another process of this run (its console says which)"
    else:
        text = str(error) if saved else write_failure(error)
    newest = latest_updates(session.out)
    if not saved and newest is None:
        text += "; no checkpoint is on disk"
    elif not saved:
        text += f"; the newest complete checkpoint is {checkpoint_dir(session.out) / str(newest)}"
    if newest is not None:
        text += f". Once there is room, continue with: purejaxppo train --resume {session.out}"
    print(f"purejaxppo: error: {text}", file=sys.stderr)
    return EXIT_WRITE


class Announce:
    """A hook that says what is about to train (process 0), once every check has passed."""

    def check(self, session: Any) -> None:
        """Nothing to check."""

    def on_start(self, session: Any) -> None:
        import jax

        if jax.process_index() != 0:
            return
        config, placement = session.spec.config, session.placement
        several = placement.num_devices > 1 or jax.process_count() > 1
        where = (
            f" over {placement.num_devices} devices ({jax.process_count()} process(es))"
            if several
            else ""
        )
        resuming = f", resuming after update {session.updates_done}" if session.restored else ""
        print(
            f"training {session.population.num_runs} run(s) of {config.env}{where}: "
            f"{config.num_updates} updates x {config.num_envs} envs x {config.num_steps} "
            f"steps, in chunks of {session.loop.chunk_updates} updates{resuming}",
            flush=True,
        )

    def on_chunk(self, session: Any, report: Any) -> None:
        """Nothing between chunks."""

    def close(self, session: Any, run: Any) -> None:
        """Nothing after the run."""


def exit_status(session: Any, run: Any, writes: bool) -> int:
    """0, 128 + the signal that stopped the run (on any process), or EXIT_NAN; process 0
    says why."""
    from purejaxppo.metrics import first_nonfinite_update

    say = (lambda text: print(text, file=sys.stderr)) if writes else (lambda text: None)
    if run.stopped:
        if run.updates_done == 0:
            saved = "no checkpoint was saved (no update had finished)"
        else:
            saved = f"checkpoint saved. Continue with: purejaxppo train --resume {session.out}"
        say(
            f"purejaxppo: stopped after {run.updates_done} of {session.num_updates} updates; "
            + saved
        )
        return 128 + run.stop_code
    nonfinite = first_nonfinite_update(run.metrics)
    if nonfinite is None:
        return 0
    index, update = nonfinite
    setting = "".join(f", {k}={v:g}" for k, v in session.population.swept[index].items())
    say(
        f"purejaxppo: error: the loss became NaN/inf at update {update + 1} of run {index} "
        f"(seed {session.population.seeds[index]}{setting}); lower the learning rate or "
        "reward_scale"
    )
    return EXIT_NAN
