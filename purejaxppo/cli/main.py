"""`purejaxppo COMMAND ...` (also `python -m purejaxppo`): dispatch, and errors to exit codes.

Every check on the input runs before anything is compiled; a bad input prints one line,
`purejaxppo: error: ...`, and exits with status 2. Help, and every check of the arguments
alone, import no jax (tests/cli/test_fast_cli.py); what needs the env comes next, before the
trainer is built. Library errors name fields; here they are shown with the flags that set
them. A file that cannot be written (a full disk) is one line too, with status 4.
SIGINT/SIGTERM handlers are in place before anything else is imported (`purejaxppo.runs.stop`):
training stops at the next chunk boundary and saves (status 130 / 143), a second signal, or a
signal to any other command, exits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from purejaxppo.cli.exits import EXIT_USAGE, EXIT_WRITE, write_failure
from purejaxppo.errors import ConfigError
from purejaxppo.runs.stop import StopOnSignals

# The flag of each library field that a command-line user sets by a flag of its own.
FLAG_OF_FIELD = {
    "chunk_updates": "--chunk-updates",
    "checkpoint_every": "--checkpoint-every",
    "eval_every": "--eval-every",
    "eval_episodes": "--eval-episodes",
    "num_devices": "--devices",
    "devices": "--devices",
    "repeats": "--repeats",
    "min_updates": "--min-updates",
    "tensorboard": "--tensorboard",
    "render_every": "--render-every",
    "wandb_project": "--wandb",
    "wandb_group": "--wandb-group",
    "wandb_name": "--wandb-name",
    "sweep": "--sweep",
    "search": "--search",
    "pbt every": "--pbt-every",
    "pbt fraction": "--pbt-fraction",
    "pbt perturb": "--pbt-perturb",
    "pbt fitness": "--pbt-fitness",
    "pbt eval_episodes": "--eval-episodes",
}


def flag_names(message: str) -> str:
    """`message` with its leading field (`field = value ...` or `field ...`) written as the
    flag that sets it."""
    for field, flag in FLAG_OF_FIELD.items():
        for lead in (f"{field} = ", f"{field} "):
            if message.startswith(lead):
                return f"{flag} {message[len(lead) :]}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's notices on every restore
    with StopOnSignals(graceful=argv[:1] == ["train"]) as stop, quiet_unraisable():
        try:
            return run_command(argv, stop)
        except ConfigError as error:
            print(f"purejaxppo: error: {flag_names(str(error))}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as error:
            print(f"purejaxppo: error: {write_failure(error)}", file=sys.stderr)
            return EXIT_WRITE
        except KeyboardInterrupt:
            print("purejaxppo: interrupted", file=sys.stderr)
            return 130


def console_main() -> int:
    """The `purejaxppo` command: `main`, with the 'ignored' exceptions kept quiet to the end
    of the process (TensorStore's futures of a failed read are collected at exit)."""
    if not os.environ.get("PUREJAXPPO_DEBUG"):
        sys.unraisablehook = ignore_unraisable
    return main()


@contextlib.contextmanager
def quiet_unraisable() -> Iterator[None]:
    """Exceptions Python can only report as 'ignored' (from finalizers of TensorStore's
    futures after a failed read or write) stay off the console, which has had the one line
    that matters. PUREJAXPPO_DEBUG=1 shows them."""
    if os.environ.get("PUREJAXPPO_DEBUG"):
        yield
        return
    previous = sys.unraisablehook
    sys.unraisablehook = ignore_unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous


def ignore_unraisable(unraisable: Any) -> None:
    """An 'Exception ignored in ...' report, dropped (see `quiet_unraisable`)."""


def run_command(argv: list[str], stop: StopOnSignals) -> int:
    """Parse `argv` and run its command; each command's module is imported when it runs."""
    from purejaxppo.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    if args.command == "train":
        from purejaxppo.cli.train import run_train

        return run_train(args, argv, stop)
    if args.command == "bench":
        from purejaxppo.cli.bench import run_bench

        return run_bench(args)
    if args.command == "eval":
        from purejaxppo.cli.evaluate import run_eval

        return run_eval(args)
    if args.command == "export":
        from purejaxppo.cli.export import run_export

        return run_export(args)
    if args.command == "render":
        from purejaxppo.cli.render import run_render

        return run_render(args)
    from purejaxppo.cli.envs import run_envs

    return run_envs(args)


if __name__ == "__main__":
    sys.exit(console_main())
