"""The command line answers help, and refuses input that needs no environment, without
importing jax or the libraries built on it; input that needs the environment is refused
before the trainer is built or the checkpoint library loaded. Each case runs in a fresh
process, which reports the modules it imported (benchmarks/cli_timing.py times them)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import purejaxppo
from purejaxppo.cli.parser import build_parser

ROOT = Path(purejaxppo.__file__).resolve().parents[1]
HEAVY = ("jax", "jaxlib", "flax", "optax", "gymnax", "chex", "orbax", "scipy")
# A refusal that needs the environment comes before these are imported.
TRAINING = ("orbax", "purejaxppo.session", "purejaxppo.ppo.trainer", "purejaxppo.outputs")

PROBE = """
import json, sys
from purejaxppo.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def python_env() -> dict[str, str]:
    """The environment of a child Python that imports this checkout's package."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_cli(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """`purejaxppo ARGS` in a fresh process: its exit status, the modules it imported and
    its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], report["modules"], done.stderr


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The modules among `modules` that are, or are inside, one of `names`."""
    return [m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names)]


def commands() -> list[str]:
    """Every command of the parser (a new one is covered without editing this test)."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_every_command_is_covered():
    assert {"train", "eval", "bench", "export", "render", "envs"} <= set(commands())


@pytest.mark.parametrize("args", [["--help"], *[[command, "--help"] for command in commands()]])
def test_help_imports_no_jax(args, tmp_path):
    code, modules, _ = run_cli(args, tmp_path)
    assert code == 0
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "--num-envs", "four"], "argument --num-envs: invalid int value: 'four'"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["train", "--num-envs", "0"], "--num-envs must be a positive integer, got 0"),
        (["train", "--total-timesteps", "-5"], "--total-timesteps must be a positive integer"),
        (["train", "--num-seeds", "0"], "--num-seeds must be a positive integer, got 0"),
        (["train", "--set", "num_minibatches=3"], "not divisible by num_minibatches = 3"),
        (["train", "--set", "no_such=1"], "unknown setting 'no_such' in --set"),
        (["train", "--sweep", "gamma=0.9,2"], "gamma = 2 is out of range"),
        (["train", "--chunk-updates", "0"], "--chunk-updates"),
        (["train", "--resume", "old", "--seed", "1"], "drop --seed"),
        (["bench", "--repeats", "0"], "--repeats must be at least 1, got 0"),
        (["bench", "--num-envs", "0"], "--num-envs takes positive integers"),
        (["eval", "run", "--episodes", "0"], "--episodes must be at least 1, got 0"),
        (["render", "run", "--episodes", "0"], "--episodes must be at least 1, got 0"),
        (["envs", "gymnax", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_bad_input_is_refused_without_jax(args, named, tmp_path):
    code, modules, err = run_cli(args, tmp_path)
    assert code == 2
    assert err.startswith("purejaxppo: error: ") and err.count("\n") == 1, err
    assert named in err
    assert loaded(modules, HEAVY) == []
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{not json", "Expecting property name"),
        ('{"config": {"num_envs": 0}}', "num_envs must be a positive integer"),
        ('{"config": {"num_envs": 4, "num_envs": 8}}', "'num_envs' given twice"),
    ],
)
def test_bad_config_file_is_refused_without_jax(text, named, tmp_path):
    (tmp_path / "config.json").write_text(text)
    code, modules, err = run_cli(["train", "--config", "config.json"], tmp_path)
    assert code == 2
    assert err.startswith("purejaxppo: error: cannot read config file config.json: ")
    assert named in err and err.count("\n") == 1, err
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "--env", "Nope-v0"], "unknown environment 'Nope-v0'"),
        (["train", "--num-seeds", "100000000"], "100000000 run(s) x 4 envs x 128 steps need"),
    ],
)
def test_input_that_needs_the_env_is_refused_before_the_trainer(args, named, tmp_path):
    """These need jax and gymnax (which the probe sees: it can fail), not the trainer, the
    session or the checkpoint library."""
    code, modules, err = run_cli(args, tmp_path)
    assert code == 2
    assert err.startswith("purejaxppo: error: ") and err.count("\n") == 1, err
    assert named in err
    assert {"jax", "gymnax"} <= set(modules)
    assert loaded(modules, TRAINING) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("first", ["from purejaxppo import Hyperparams", "import jax"])
def test_hyperparams_are_a_pytree_whichever_is_imported_first(first):
    """The config imports no jax, yet `Hyperparams` is a pytree once jax is there, imported
    before or after it: a sweep is a `jax.vmap` over it."""
    code = (
        f"{first}\n"
        "import jax, numpy as np\n"
        "from purejaxppo import Hyperparams\n"
        "from purejaxppo.config import stack_hyperparams\n"
        "assert len(jax.tree.leaves(Hyperparams())) == 10\n"
        "sweep = stack_hyperparams([Hyperparams(), Hyperparams(gamma=0.5)])\n"
        "doubled = jax.vmap(lambda hp: hp.replace(gamma=2 * hp.gamma))(sweep)\n"
        "assert isinstance(doubled, Hyperparams)\n"
        "assert np.allclose(doubled.gamma, [1.98, 1.0]), doubled.gamma\n"
        "print('pytree')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=python_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pytree"
