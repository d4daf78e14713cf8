"""The memory model against XLA's own analysis; an impossible population is refused early."""

import re
from pathlib import Path

import jax
import pytest
from suite_helpers import FAITHFUL_CPU_COMPILE, jit_fast

from purejaxppo import ConfigError, Hyperparams, PPOConfig, make_train
from purejaxppo.cli.main import main
from purejaxppo.config import stack_hyperparams
from purejaxppo.envs.setup import make_env
from purejaxppo.ppo.evaluate import evaluate_policy
from purejaxppo.ppo.types import Metrics, policy_of
from purejaxppo.runs.memory_budget import (
    check_evaluation_fits,
    check_fits,
    check_metrics_fit,
    estimate_bytes,
    evaluation_bytes,
    metrics_bytes,
    parameter_count,
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "num_envs", "runs", "hidden", "minibatches", "gru"),
    [
        ("CartPole-v1", 64, 1, (64, 64), 4, 0),
        ("CartPole-v1", 256, 2, (64, 64), 4, 0),
        ("CartPole-v1", 128, 1, (256, 256), 8, 0),
        ("Pendulum-v1", 64, 1, (64, 64), 8, 0),
        ("Breakout-MinAtar", 32, 1, (64,), 4, 0),
        ("CartPole-v1", 64, 1, (64, 64), 4, 128),
    ],
)
def test_model_tracks_xla_memory_analysis(env, num_envs, runs, hidden, minibatches, gru):
    config = PPOConfig(
        recurrent=gru > 0,
        gru_size=gru or 128,
        env=env,
        num_envs=num_envs,
        num_steps=128,
        total_timesteps=num_envs * 128 * 2,
        hidden_sizes=hidden,
        num_minibatches=minibatches,
    )
    trainer = make_train(config)
    keys = jax.random.split(jax.random.key(0), runs)
    hps = stack_hyperparams([Hyperparams()] * runs)
    # LLVM's optimisations off: the same buffers as the default compile, in half the time.
    program = jit_fast(jax.vmap(trainer), FAITHFUL_CPU_COMPILE)
    analysis = program.lower(keys, hps).compile().memory_analysis()
    xla = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    model = estimate_bytes(config, trainer.env, runs)
    assert xla / 1.5 < model < xla * 2, (model, xla)


def test_population_that_cannot_fit_is_refused():
    trainer = make_train(PPOConfig(num_envs=4096, total_timesteps=4096 * 128))
    with pytest.raises(ConfigError, match=r"need about .* GiB, but 1.0 GiB is free"):
        check_fits(trainer.config, trainer.env, num_runs=64, free=2**30)
    check_fits(trainer.config, trainer.env, num_runs=1, free=2**30)  # one run fits


def test_metrics_of_too_many_updates_are_refused():
    config = PPOConfig(num_envs=4, num_steps=128, total_timesteps=4 * 128 * 10**6)
    assert metrics_bytes(config, 2) == 2 * 10**6 * len(Metrics._fields) * 4  # float32 each
    with pytest.raises(ConfigError, match=r"2 run\(s\) x 1,000,000 updates need about 0.1 GiB"):
        check_metrics_fit(config, 2, free=2**26)
    check_metrics_fit(config, 2, free=2**30)  # 0.1 GiB fits in 1 GiB


def test_cli_refuses_oversized_population_before_compiling(capsys):
    code = main(
        [
            "train",
            "--num-envs",
            "65536",
            "--num-seeds",
            "4096",
            "--total-timesteps",
            "10000000",
            "--out",
            "/tmp/never",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "GiB" in err and "at most" in err and err.count("\n") == 1


def test_readme_error_example_is_the_models_message():
    """The README quotes the error of a population too large for a 23 GiB host: its text is
    what `check_fits` says for that population with that much free memory."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    quoted = re.search(r"`purejaxppo: error: (\d+) run\(s\) x (\d+) envs x 128 steps.*?`", readme)
    runs, envs = int(quoted.group(1)), int(quoted.group(2))
    free = float(re.search(r"but ([\d.]+) GiB is free", quoted.group(0)).group(1))
    config = PPOConfig(env="CartPole-v1", num_envs=envs, num_steps=128, total_timesteps=envs * 128)
    with pytest.raises(ConfigError) as error:
        check_fits(config, make_env("CartPole-v1"), runs, free=int(free * 2**30))
    assert f"purejaxppo: error: {error.value}" == quoted.group(0).strip("`")


@pytest.mark.parametrize(
    "config",
    [
        PPOConfig(),
        PPOConfig(env="Pendulum-v1", hidden_sizes=(32, 16, 8)),
        PPOConfig(env="Breakout-MinAtar", network="cnn", hidden_sizes=(64,)),
        PPOConfig(recurrent=True, gru_size=16, hidden_sizes=(8, 4)),
    ],
)
def test_parameter_count_is_the_networks(config):
    """Counted from shapes alone, it is the size of the parameters a run initialises."""
    trainer = make_train(config)
    state = jax.eval_shape(trainer.init, jax.random.key(0), Hyperparams())
    leaves = jax.tree.leaves(state.params)
    assert parameter_count(config, trainer.env) == sum(leaf.size for leaf in leaves)


def test_a_network_too_wide_is_refused_naming_hidden_sizes():
    """The rollout of 4 envs x 128 steps is small; the parameters of two 30000-wide layers
    per tower, with the initialisation's and the optimizer's copies, are not."""
    config = PPOConfig(hidden_sizes=(30000, 30000))
    spec = make_env("CartPole-v1")
    assert parameter_count(config, spec) == 1_800_450_003
    with pytest.raises(ConfigError) as error:
        check_fits(config, spec, num_runs=1, free=64 * 2**30)
    platform = jax.devices()[0].platform
    assert str(error.value) == (
        "hidden_sizes = (30000, 30000): one run's network of 1,800,450,003 parameters needs "
        f"about 107.3 GiB to initialise and train, but 64.0 GiB is free on {platform}: use "
        "smaller hidden_sizes"
    )
    wide = PPOConfig(hidden_sizes=(4096, 4096))  # 134 MiB a run, 2 GiB to initialise
    with pytest.raises(ConfigError, match=r"at most 3 run\(s\) fit: use smaller hidden_sizes or"):
        check_fits(wide, spec, num_runs=4, free=10 * 2**30)
    check_fits(wide, spec, num_runs=3, free=10 * 2**30)


@pytest.mark.parametrize(
    ("env", "hidden", "gru", "episodes"),
    [("CartPole-v1", (64, 64), 0, 4096), ("DeepSea-bsuite", (64, 64), 0, 4096)],
)
def test_evaluation_model_tracks_xla_memory_analysis(env, hidden, gru, episodes):
    config = PPOConfig(env=env, hidden_sizes=hidden, recurrent=gru > 0, gru_size=gru or 128)
    trainer = make_train(config)
    state = jax.eval_shape(trainer.init, jax.random.key(0), Hyperparams())
    policy = policy_of(config, state)

    def play(policy, key):
        return evaluate_policy(trainer, policy, key, episodes, True)

    program = jit_fast(play, FAITHFUL_CPU_COMPILE)
    analysis = program.lower(policy, jax.random.key(0)).compile().memory_analysis()
    xla = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    model = evaluation_bytes(config, trainer.env, 1, episodes)
    assert xla / 1.5 < model < xla * 2, (model, xla)


def test_evaluation_that_cannot_fit_is_refused_with_the_episodes_that_fit():
    config, spec = PPOConfig(), make_env("CartPole-v1")
    with pytest.raises(ConfigError) as error:
        check_evaluation_fits(config, spec, 2, 10**8, "--episodes", free=2**30)
    message = str(error.value)
    assert message.startswith("--episodes 100000000: evaluating 2 run(s) x 100,000,000 episodes")
    fit = int(message.split("lower it to ")[1])
    check_evaluation_fits(config, spec, 2, fit, free=2**30)
    with pytest.raises(ConfigError, match=r"^eval_episodes = \d+: .* lower it to"):
        check_evaluation_fits(config, spec, 2, fit + 1, "eval_episodes", free=2**30)
