"""Every gymnax environment trains; env names across suites; optional suites load lazily."""

import dataclasses
import subprocess
import sys
import urllib.error

import gymnax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from gymnax.utils import load_mnist
from suite_helpers import assert_trained, tiny_config, train_once

from purejaxppo import ConfigError, make_env, make_train
from purejaxppo.cli.main import main
from purejaxppo.envs import suites
from purejaxppo.envs.functional import FunctionalEnv

FAMILIES = ("MinAtar", "bsuite", "misc")


def family(name: str) -> str:
    """Group gymnax envs by family (the suffix after the last '-'; v0/v1: classic control)."""
    suffix = name.rsplit("-", 1)[-1]
    return suffix if suffix in FAMILIES else "classic"


def gymnax_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in gymnax.registered_envs:
        groups.setdefault(family(name), []).append(name)
    return groups


@pytest.fixture
def offline_mnist(monkeypatch):
    """MNISTBandit-bsuite without its download: 20 random 28x28 images with labels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 128, (20, 28, 28)).astype(np.int8)
    labels = rng.integers(0, 10, 20).astype(np.uint8)
    monkeypatch.setattr(
        load_mnist, "load_mnist", lambda *a, **k: ((images, labels), (images, labels))
    )


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(gymnax_groups()))
def test_every_gymnax_env_trains(group, offline_mnist):
    """One update of a tiny config for every registered gymnax env, one program per family:
    finite losses, observations float32 of the spec's shape (one-hot for FrozenLake's
    Discrete observations)."""
    names = gymnax_groups()[group]
    trainers = [make_train(tiny_config(name)) for name in names]
    for trainer, (loss, obs) in zip(trainers, train_once(trainers), strict=True):
        assert_trained(trainer, loss, obs)


def test_groups_cover_every_gymnax_env():
    grouped = sorted(name for names in gymnax_groups().values() for name in names)
    assert grouped == sorted(gymnax.registered_envs)
    assert len(grouped) >= 26


def test_discrete_observations_are_one_hot():
    spec = make_env("FrozenLake-misc")
    assert spec.obs_classes == 16 and spec.obs_shape == (16,)


def test_failed_download_is_a_config_error(monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(load_mnist, "load_mnist", no_network)
    with pytest.raises(ConfigError, match="MNISTBandit-bsuite downloads its data"):
        make_env("MNISTBandit-bsuite")


def test_gymnax_prefix_is_optional():
    assert make_env("gymnax:CartPole-v1").name == make_env("CartPole-v1").name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuite:CartPole-v1", "unknown environment suite 'nosuite'"),
        ("brax:antt", "did you mean brax:ant"),
        ("xminigrid:MiniGrid-Empty-5x6", "did you mean xminigrid:MiniGrid-Empty-"),
        ("Acrobot-v2", "did you mean Acrobot-v1"),
        ("ant", "other suites: brax:NAME, xminigrid:NAME"),
    ],
)
def test_unknown_names(name, message):
    with pytest.raises(ConfigError, match=message):
        make_env(name)


@pytest.mark.parametrize("suite", ["brax", "xminigrid"])
def test_missing_extra_names_the_pip_command(monkeypatch, suite):
    missing = dataclasses.replace(suites.SUITES[suite], module="purejaxppo_no_such_module")
    monkeypatch.setitem(suites.SUITES, suite, missing)
    with pytest.raises(ConfigError, match=rf"pip install 'purejaxppo\[{suite}\]'"):
        make_env(f"{suite}:anything")


def test_a_suite_env_that_fails_to_trace_is_a_config_error():
    """As brax:swimmer with jax 0.10 (`jnp.clip(a_min=...)` inside brax): one line, early."""

    def step(key, state, action):
        raise TypeError("clip() got an unexpected keyword argument 'a_min'")

    def reset(key):
        return jnp.zeros(2), jnp.zeros(())

    env = FunctionalEnv("broken", reset, step, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), 5)
    with pytest.raises(ConfigError, match=r"broken does not run with jax .*TypeError: clip\(\)"):
        suites.check_traces(env, jnp.zeros((), jnp.int32))


def test_optional_suites_are_installed():
    """CI installs `.[dev]`, which holds every extra: a missing suite fails, never skips."""
    for suite in suites.SUITES.values():
        assert suite.installed(), suite.install_command()
        assert suite.env_names()


def test_gymnax_envs_do_not_import_optional_suites():
    code = (
        "import sys, purejaxppo\n"
        "from purejaxppo import make_env\n"
        "make_env('CartPole-v1')\n"
        "loaded = [m for m in ('brax', 'xminigrid', 'mujoco') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_lists_every_suite(capsys):
    assert main(["envs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"gymnax ({len(gymnax.registered_envs)} envs):" in lines
    for name in ("CartPole-v1", "brax:inverted_pendulum", "xminigrid:MiniGrid-Empty-5x5"):
        assert f"  {name}" in lines


def test_cli_lists_a_missing_suite_with_its_install_command(monkeypatch, capsys):
    missing = dataclasses.replace(suites.SUITES["brax"], module="purejaxppo_no_such_module")
    monkeypatch.setitem(suites.SUITES, "brax", missing)
    assert main(["envs", "brax"]) == 0
    assert capsys.readouterr().out == "brax: not installed (pip install 'purejaxppo[brax]')\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["envs", "nosuite"], "unknown suite 'nosuite'"),
        (["train", "--env", "brax:pendulum"], "did you mean brax:inverted_pendulum"),
    ],
)
def test_cli_suite_errors(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("purejaxppo: error: ") and message in err and err.count("\n") == 1
