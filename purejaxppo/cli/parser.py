"""The command line's arguments: one parser, one sub-parser per command. The settings that
`--set` takes are listed from the fields' own docstrings (`config.field_docs`)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from purejaxppo.config import Hyperparams, PPOConfig, field_docs
from purejaxppo.errors import ConfigError
from purejaxppo.presets import PRESETS


def settings_help(width: int = 88) -> str:
    """Every `PPOConfig` field and hyperparameter with its default and its docstring."""
    lines = []
    for title, cls in (
        ("config fields (static)", PPOConfig),
        ("hyperparameters (traced, sweepable)", Hyperparams),
    ):
        lines.append(f"{title}, for --set NAME=VALUE:")
        defaults = cls()
        for name, doc in field_docs(cls).items():
            text = f"{name} (default {getattr(defaults, name)!r}): {doc}"
            lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def nonempty_argument(text: str) -> str:
    """`text`, unless it is empty or blank: argparse's error then names the flag."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, got an empty string")
    return text


def path_argument(text: str) -> Path:
    """`type=` of the flags that name a file or a directory. `Path("")` is the current
    directory, so an empty value (an unset shell variable, say) would read or write there:
    refused."""
    return Path(nonempty_argument(text))


def output_argument(text: str) -> str:
    """`type=` of an `--out` that names a file, or a directory to hold one: the text as
    given, for `Path` drops the trailing slash that marks a directory
    (`cli.values.output_file`)."""
    return nonempty_argument(text)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) via ConfigError."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: cartpole)")
    source.add_argument(
        "--env",
        help="an environment: a gymnax name (CartPole-v1), brax:NAME or xminigrid:NAME "
        "(`purejaxppo envs` lists them)",
    )
    source.add_argument(
        "--config", type=path_argument, help="a config.json written by an earlier run"
    )
    source.add_argument(
        "--replay-best",
        type=path_argument,
        metavar="RUN_DIR",
        help="train one fresh run with the hyperparameter schedule of the best run of the "
        "PBT run in RUN_DIR (its seed; --num-seeds for more)",
    )
    add_list_flag(
        parser,
        "--set",
        "NAME=VALUE",
        "set any config field or hyperparameter (listed below), e.g. --set learning_rate=3e-4",
    )
    parser.add_argument("--total-timesteps", type=int, help="env steps per run")
    add_path_flag(
        parser,
        "--compilation-cache",
        "DIR",
        "persistent XLA compilation cache: a later run of the same program skips compiling",
    )


def add_int_flag(parser: Any, flag: str, metavar: str, help: str) -> None:
    parser.add_argument(flag, type=int, metavar=metavar, help=help)


def add_path_flag(parser: Any, flag: str, metavar: str, help: str) -> None:
    parser.add_argument(flag, type=path_argument, metavar=metavar, help=help)


def add_list_flag(parser: Any, flag: str, metavar: str, help: str) -> None:
    """A flag given any number of times; its values collect in a list."""
    parser.add_argument(flag, action="append", default=[], metavar=metavar, help=help)


def build_parser() -> argparse.ArgumentParser:
    """`purejaxppo` and its commands: train, eval, export, render, envs, bench."""
    parser = _Parser(prog="purejaxppo", description="PPO in one jitted JAX function.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_train_command(commands)
    add_eval_command(commands)
    add_export_command(commands)
    add_render_command(commands)
    envs = commands.add_parser("envs", help="list environments by suite, and what is installed")
    envs.add_argument("suite", nargs="?", help="only this suite: gymnax, brax or xminigrid")
    add_bench_command(commands)
    return parser


def add_settings_command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A command that takes the run's settings (preset / env / config file, --set, ...),
    with every setting listed under its help."""
    command = commands.add_parser(
        name,
        help=help,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_source_arguments(command)
    return command


def add_train_command(commands: Any) -> None:
    train = add_settings_command(commands, "train", "train one or many runs in one compiled call")
    train.add_argument("--num-seeds", type=int, help="independent runs per setting")
    train.add_argument("--num-envs", type=int, help="parallel envs per run")
    train.add_argument("--seed", type=int, help="first seed; runs use seed, seed+1, ...")
    add_list_flag(
        train,
        "--sweep",
        "NAME=V1,V2,...",
        "sweep a hyperparameter: every value x every seed in one compiled call",
    )
    add_list_flag(
        train,
        "--search",
        "NAME=KIND:LOW:HIGH",
        "search a hyperparameter: each seed draws its own value, KIND log (log-uniform) or "
        "uniform, e.g. learning_rate=log:1e-5:3e-2; crosses with --sweep",
    )
    add_pbt_arguments(train)
    add_output_arguments(train)
    add_tracker_arguments(train)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_int_flag(
        train,
        "--devices",
        "N",
        "shard the runs over the first N devices (default: all devices of all processes)",
    )
    add_process_arguments(train)


def add_output_arguments(train: argparse.ArgumentParser) -> None:
    """Where a run goes and what it writes on the way: chunks, checkpoints, evaluations,
    TensorBoard, GIFs."""
    train.add_argument(
        "--out", type=path_argument, help="output directory (default: runs/<name>-<time>)"
    )
    add_int_flag(
        train,
        "--chunk-updates",
        "K",
        "updates per compiled chunk of the host loop (default: about 1/20 of the run)",
    )
    add_int_flag(
        train,
        "--checkpoint-every",
        "CHUNKS",
        "save a checkpoint every N chunks, and always at the end (0: only at the end; "
        "default 10, or the resumed run's)",
    )
    add_path_flag(train, "--resume", "DIR", "continue the run saved in DIR (its --out)")
    add_int_flag(
        train,
        "--eval-every",
        "CHUNKS",
        "evaluate the deterministic policy every N chunks into metrics.csv (0: never; "
        "default 0, or the resumed run's)",
    )
    train.add_argument(
        "--eval-episodes",
        type=int,
        help="episodes per run and evaluation (default 16, or the resumed run's)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard logs to OUT/tensorboard (needs purejaxppo[tensorboard])",
    )
    add_int_flag(
        train,
        "--render-every",
        "CHUNKS",
        "every N chunks and at the end, a GIF of one deterministic episode of run 0 in "
        "OUT/renders, and in TensorBoard / W&B when on (0: never; default 0, or the resumed "
        "run's; gymnax's drawings need purejaxppo[render])",
    )


def add_pbt_arguments(train: argparse.ArgumentParser) -> None:
    pbt = train.add_argument_group(
        "population-based training (evolves the --search hyperparameters, inside the chunks)"
    )
    add_int_flag(pbt, "--pbt-every", "UPDATES", "updates between exploit steps (0: off, default)")
    pbt.add_argument(
        "--pbt-fraction",
        type=float,
        metavar="F",
        help="share of runs replaced by copies of the top share (default 0.25)",
    )
    pbt.add_argument(
        "--pbt-perturb",
        metavar="LOW,HIGH",
        help="factors a copied searched value is multiplied by, one at random (default 0.8,1.25)",
    )
    pbt.add_argument(
        "--pbt-fitness",
        choices=("return", "eval"),
        help="rank by the mean episode return since the last step (return, default) or by "
        "--eval-episodes deterministic episodes at the step (eval; needs --eval-every)",
    )


def add_tracker_arguments(train: argparse.ArgumentParser) -> None:
    """`--wandb PROJECT`, `--wandb-group`, `--wandb-name`."""
    tracker = train.add_argument_group(
        "Weights & Biases (needs purejaxppo[wandb]; WANDB_MODE=offline and WANDB_DIR work)"
    )
    tracker.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="log every run to this project, one tracker run each (a resumed run logs on "
        "into the same tracker runs)",
    )
    tracker.add_argument(
        "--wandb-group", metavar="GROUP", help="the runs' group (default: OUT's name)"
    )
    tracker.add_argument(
        "--wandb-name", metavar="NAME", help="tracker runs are NAME-run-R (default: OUT's name)"
    )


def add_process_arguments(train: argparse.ArgumentParser) -> None:
    hosts = train.add_argument_group(
        "several processes (jax.distributed; or PUREJAXPPO_COORDINATOR, "
        "PUREJAXPPO_NUM_PROCESSES, PUREJAXPPO_PROCESS_ID; detected under SLURM)"
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    hosts.add_argument("--num-processes", type=int, help="number of processes")
    hosts.add_argument("--process-id", type=int, help="this process's index, 0..n-1")


def add_eval_command(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="play the saved policies of a trained run")
    evaluate.add_argument("run_dir", type=path_argument, help="the --out directory of a train run")
    evaluate.add_argument("--episodes", type=int, default=32, help="episodes per run and mode")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the evaluation envs")
    evaluate.add_argument(
        "--out",
        type=output_argument,
        help="results file, or a directory for eval.json: DIR/ or an existing directory "
        "(default: RUN_DIR/eval.json)",
    )


def add_export_command(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write a saved run's deterministic policy as a jax.export or ONNX file"
    )
    export.add_argument("run_dir", type=path_argument, help="the --out directory of a train run")
    export.add_argument("--run", type=int, default=0, help="which run of the population")
    export.add_argument(
        "--out",
        type=path_argument,
        required=True,
        help="directory for policy.jax (or .onnx) and .json",
    )
    export.add_argument(
        "--format",
        choices=("jax", "onnx"),
        default="jax",
        help="jax: jax.export serialization (default); onnx: an ONNX model, checked against "
        "the JAX policy before it is written (needs purejaxppo[onnx])",
    )


def add_render_command(commands: Any) -> None:
    render = commands.add_parser(
        "render", help="play fresh episodes with a saved policy and write them as a GIF or MP4"
    )
    render.add_argument("run_dir", type=path_argument, help="the --out directory of a train run")
    render.add_argument("--run", type=int, default=0, help="which run of the population")
    render.add_argument("--episodes", type=int, default=1, help="episodes, one after another")
    render.add_argument("--seed", type=int, default=0, help="seed of the episodes' envs")
    mode = render.add_mutually_exclusive_group()
    mode.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=True,
        help="act with the policy's mode (default)",
    )
    mode.add_argument(
        "--sample", dest="deterministic", action="store_false", help="sample the actions"
    )
    render.add_argument(
        "--out",
        type=output_argument,
        help="a .gif or .mp4 file (mp4 needs ffmpeg), or a directory for run-K.gif: DIR/ or "
        "an existing directory (default: RUN_DIR/renders/run-K.gif)",
    )


def add_bench_command(commands: Any) -> None:
    bench = add_settings_command(commands, "bench", "steps per second against the env-only floor")
    bench.add_argument(
        "--num-envs", default="4,64,512,2048", help="comma list (default %(default)s)"
    )
    bench.add_argument("--num-seeds", default="1,16", help="comma list (default %(default)s)")
    bench.add_argument("--repeats", type=int, default=3, help="timed calls per point (median)")
    bench.add_argument(
        "--min-updates", type=int, default=4, help="raise total_timesteps to this many updates"
    )
    bench.add_argument(
        "--out", type=path_argument, help="output directory (default: runs/bench-<time>)"
    )
    add_path_flag(
        bench,
        "--profile",
        "DIR",
        "jax.profiler trace of one more call of the first point's trainer (not timed)",
    )
    add_int_flag(
        bench,
        "--chunk-updates",
        "K",
        "also time the chunked host loop (chunks of K updates) and its overhead",
    )
