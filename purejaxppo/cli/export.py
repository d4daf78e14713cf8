"""`purejaxppo export RUN_DIR --out DIR [--format jax|onnx]`: one saved run's deterministic
policy as a `jax.export` file or an ONNX model that runs without purejaxppo
(`purejaxppo.outputs.export`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

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
    session = TrainSession.open(spec, loop, args.run_dir, resume=True, check_fits=False)
    policies = session.policies(session.restored.state)
    policy = jax.tree.map(lambda leaf: leaf[args.run], policies)
    document = session.document(
        updates_done=session.updates_done, exported_run=exported_run(session, args.run)
    )
    try:
        export_policy(session.trainer, policy, args.out, document, format=args.format)
    except ExportMismatch as error:
        print(f"purejaxppo: export failed: {error}", file=sys.stderr)
        return 1
    written = "policy.onnx" if args.format == "onnx" else "policy.jax"
    print(f"wrote {args.out}/{written} and policy.json (run {args.run} of {spec.name})")
    if args.format == "onnx":
        check = json.loads((args.out / "policy.json").read_text())["onnx_check"]
        print(
            f"checked against the JAX policy on {check['observations']} observations: "
            f"max action difference {check['max_action_difference']:.3g}"
        )
    return 0


def exported_run(session: Any, run: int) -> dict[str, Any]:
    """What the JSON says of the exported run: its index, seed, swept setting and its own
    hyperparameters (those its population strategy evolved, where it did)."""
    population, carried = session.population, session.restored_carried()
    evolved = None if carried is None else carried.hyperparams
    return {
        "run": run,
        "seed": population.seeds[run],
        "setting": dict(population.swept[run]),
        "hyperparams": population.run_hyperparams(run, evolved),
    }
