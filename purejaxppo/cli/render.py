"""`purejaxppo render RUN_DIR`: fresh episodes of one saved run's policy as a GIF or MP4
(`purejaxppo.outputs.render`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from purejaxppo.cli.values import output_file
from purejaxppo.errors import ConfigError
from purejaxppo.runs.spec import MAX_SEED

if TYPE_CHECKING:
    from purejaxppo.outputs.render import Rendered


def run_render(args: argparse.Namespace) -> int:
    """Render `--episodes` episodes of run `--run` of the newest checkpoint in `run_dir`."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must lie in 0..{MAX_SEED}, got {args.seed}")
    from purejaxppo.envs.setup import make_env
    from purejaxppo.outputs.render import check_drawable, check_movie_path
    from purejaxppo.session import TrainSession, load_saved_run

    name = f"run-{args.run}.gif"
    out = output_file(args.out, args.run_dir / "renders" / name, name)
    check_movie_path(out, "--out")  # writable too: before the run's files are read
    spec, loop = load_saved_run(args.run_dir)
    if not 0 <= args.run < spec.num_runs:
        raise ConfigError(f"--run must lie in 0..{spec.num_runs - 1}, got {args.run}")
    check_drawable(make_env(spec.config.env))  # before the checkpoint is restored
    session = TrainSession.open(spec, loop, args.run_dir, resume=True, check_fits=False)
    rendered = render_run(session, args.run, out, args.episodes, args.seed, args.deterministic)
    returns = ", ".join(f"{r:.1f}" for r in rendered.returns)
    mode = "deterministic" if args.deterministic else "sampled"
    print(f"wrote {out}: {rendered.frames} frames, {mode} episode returns {returns}")
    return 0


def render_run(
    session: Any, run: int, out: Path, episodes: int, seed: int, deterministic: bool
) -> Rendered:
    """One saved run's episodes drawn into `out`, titled with the env, run, seed and update."""
    import jax

    from purejaxppo.outputs.render import draw_record, record_episodes, render_title

    policy = jax.tree.map(lambda leaf: leaf[run], session.policies(session.restored.state))
    label = render_title(session, run, session.updates_done)
    key = jax.random.key(seed)
    record = record_episodes(session.trainer, policy, key, episodes, deterministic)
    return draw_record(session.trainer, record, out, label)
