"""`purejaxppo export RUN_DIR --out DIR [--format jax|onnx]`: one saved run's deterministic
policy as a `jax.export` file or an ONNX model that runs without purejaxppo
(`purejaxppo.outputs.export`)."""

from __future__ import annotations

import argparse
import sys

from purejaxppo.cli.values import prepare_output_dir
from purejaxppo.errors import ConfigError


def run_export(args: argparse.Namespace) -> int:
    """Export run `--run` of the newest checkpoint in `args.run_dir` to `args.out`."""
    import jax

    from purejaxppo.outputs.export import ExportMismatch, export_policy, onnx_modules
    from purejaxppo.session import TrainSession, load_saved_run

    if args.format == "onnx":
        onnx_modules()  # the install line first, before the checkpoint is read
    spec, loop = load_saved_run(args.run_dir)
    if not 0 <= args.run < spec.num_runs:
        raise ConfigError(f"--run must lie in 0..{spec.num_runs - 1}, got {args.run}")
    prepare_output_dir(args.out)
    session = TrainSession.open(spec, loop, args.run_dir, resume=True)
    policies = session.policies(session.restored.state)
    policy = jax.tree.map(lambda leaf: leaf[args.run], policies)
    population = session.population
    document = session.document(
        updates_done=session.updates_done,
        exported_run={"run": args.run, "seed": population.seeds[args.run]},
    )
    try:
        export_policy(session.trainer, policy, args.out, document, format=args.format)
    except ExportMismatch as error:
        print(f"purejaxppo: export failed: {error}", file=sys.stderr)
        return 1
    written = "policy.onnx" if args.format == "onnx" else "policy.jax"
    print(f"wrote {args.out}/{written} and policy.json (run {args.run} of {spec.name})")
    return 0
