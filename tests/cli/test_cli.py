"""The command line: bad input fails fast with one clear line; a small run writes its outputs."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from fast_compile import trainers_compiled_fast
from suite_helpers import forbid_compiling

from purejaxppo import PPOConfig
from purejaxppo.cli.main import main
from purejaxppo.cli.parser import build_parser
from purejaxppo.cli.train import resolve_train_request

# Nothing here is compared bit for bit with a run compiled or chunked otherwise, nor must
# learn a return: its trainers compile fast.
pytestmark = pytest.mark.usefixtures("compiled_fast")


@pytest.fixture
def compiled_fast():
    """The trainers this test makes compile fast (`fast_compile.trainers_compiled_fast`)."""
    with trainers_compiled_fast():
        yield


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
        (["--env", "Cartpole-v1"], "did you mean CartPole-v1"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--set", "num_minibatches=3"], "is not divisible by num_minibatches = 3"),
        (["--num-envs", "0"], "--num-envs must be a positive integer, got 0"),
        (["--total-timesteps", "-5"], "--total-timesteps must be a positive integer"),
        (["--num-seeds", "0"], "--num-seeds must be a positive integer, got 0"),
        (["--set", "update_epochs=0"], "update_epochs must be a positive integer"),
        (["--set", "learning_rate=-1"], "learning_rate = -1 is out of range"),
        (["--set", "gamma=1.5"], "gamma = 1.5 is out of range"),
        (["--set", "clip_eps=abc"], "clip_eps must be a number, got 'abc'"),
        (["--set", "ent_coef=nan"], "ent_coef must be a finite number"),
        (["--set", "vf_coef=-0.5"], "vf_coef = -0.5 is out of range"),
        (["--set", "num_steps=ten"], "cannot parse 'ten' as a value of num_steps"),
        (["--set", "no_such=1"], "unknown setting 'no_such' in --set"),
        (["--set", "learning_rate"], "--set takes NAME=VALUE"),
        (["--sweep", "no_such=1,2"], "unknown setting 'no_such' in --sweep"),
        (["--sweep", "num_envs=4,8"], "cannot sweep 'num_envs'"),
        (["--sweep", "learning_rate=1e-3,x"], "learning_rate must be a number, got 'x'"),
        (["--sweep", "gamma=0.9,2"], "gamma = 2 is out of range"),
        (["--num-seeds", "two"], "invalid int value: 'two'"),
        (["--out", "/proc/purejaxppo-cannot-write"], "cannot write to output directory"),
        (["--set", "gamma=0.95", "--sweep", "gamma=0.9,0.99"], "gamma is both set (--set) and"),
        (["--set", "num_envs=8", "--num-envs", "16"], "num_envs is given twice"),
        (["--set", "total_timesteps=4096", "--total-timesteps", "8192"], "is given twice"),
        (["--total-timesteps", str(10**13)], "GiB of host memory"),
    ],
)
def test_bad_input_one_line_error(args, message, capsys):
    code = main(["train", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("purejaxppo: error: ")
    assert message in err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ([], "cartpole"),
        (["--preset", "acrobot", "--num-envs", "8", "--total-timesteps", "4096"], "acrobot"),
        (["--env", "Pendulum-v1"], "Pendulum-v1"),
    ],
)
def test_run_is_named_by_its_preset_or_env(args, name):
    request = resolve_train_request(build_parser().parse_args(["train", *args]))
    assert request.spec.name == name and request.out.name.startswith(f"{name}-")


def test_missing_tensorboard_fails_before_compiling(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # its import raises ImportError
    out = tmp_path / "run"
    assert main(["train", "--total-timesteps", "1024", "--tensorboard", "--out", str(out)]) == 2
    assert "--tensorboard needs tensorboardX" in capsys.readouterr().err
    assert not (out / "metrics.csv").exists()


def test_bad_input_no_traceback_from_process():
    proc = subprocess.run(
        [sys.executable, "-m", "purejaxppo", "train", "--env", "Bogus-v0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("purejaxppo: error: unknown environment")


def test_train_with_sweep_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--preset",
            "cartpole",
            "--num-seeds",
            "2",
            "--total-timesteps",
            "5120",
            "--sweep",
            "learning_rate=2.5e-4,1e-3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "final return" in printed and "SPS" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["env"] == "CartPole-v1"
    assert config["sweep"] == {"learning_rate": [2.5e-4, 1e-3]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_runs"] == 4
    assert summary["env_steps"] == 4 * 10 * 512
    assert len(summary["final_return"]["per_run"]) == 4
    assert summary["final_return"]["mean"] > 8  # CartPole returns are at least ~8
    assert summary["sps"] > 0 and summary["compile_s"] > 0 and summary["run_s"] > 0
    assert summary["versions"]["gymnax"].startswith("1.")
    assert [g["setting"] for g in summary["groups"]] == [
        {"learning_rate": 2.5e-4},
        {"learning_rate": 1e-3},
    ]
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 10
    assert rows[0]["setting.learning_rate"] == "0.00025"
    assert rows[-1]["env_steps"] == "5120" and rows[-1]["run"] == "3"
    assert (out / "learning_curve.png").stat().st_size > 10_000

    # config.json reruns the same thing.
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert (
        json.loads((again / "summary.json").read_text())["final_return"]["per_run"]
        == (summary["final_return"]["per_run"])
    )


def test_nan_loss_is_reported_with_its_update(tmp_path, capsys):
    code = main(
        [
            "train",
            "--preset",
            "cartpole",
            "--total-timesteps",
            "2048",
            "--set",
            "reward_scale=1e38",
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "the loss became NaN/inf at update 1 of run 0" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", str(2**32)], "must lie in 0..4294967295"),
        (["--seed", str(2**32 - 2), "--num-seeds", "4"], "must lie in 0..4294967295"),
        (["--sweep", "gamma=0.9", "--sweep", "gamma=0.99"], "--sweep gamma is given twice"),
        (["--sweep", "learning_rate=1e-3,0.001"], "--sweep learning_rate repeats a value"),
    ],
)
def test_more_bad_input(args, message, capsys):
    assert main(["train", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sweep": None}, "sweep must map names to lists of numbers"),
        ({"sweep": {"gamma": 0.9}}, "sweep must map names to lists of numbers"),
        ({"seed": "0"}, "seed must be an integer"),
        ({"num_seeds": 2.0}, "num_seeds must be an integer"),
        ({"config": {"env": "CartPole-v1", "num_envs": 0}}, "cannot read config file"),
        ({"sweep": {"gamma": [0.9, 0.9]}}, "sweep gamma repeats a value"),
        ({"sweep": {"num_envs": [4, 8]}}, "cannot sweep 'num_envs'"),
        ({"sweep": {"gamma": [0.9, 1.5]}}, "gamma = 1.5 is out of range"),
        ({"hyperparams": {"learning_rate": [1e-3, 2e-3]}}, "learning_rate must be a number"),
        ({"hyperparams": {"gamma": True}}, "hyperparams: gamma must be a number, got True"),
        ({"hyperparams": [0.99]}, "hyperparams must be an object of numbers"),
    ],
)
def test_bad_config_file(tmp_path, change, message, capsys):
    data = {
        "config": {"env": "CartPole-v1", "hidden_sizes": [64, 64]},
        "hyperparams": {},
        "seed": 0,
        "num_seeds": 1,
        "sweep": {},
    }
    data.update(change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_train_and_eval_with_every_new_switch(tmp_path, capsys):
    """Recurrent policy, both normalisations, cosine schedules and a target-KL stop from the
    command line; the metrics log the schedules and epochs; eval reads the checkpoint."""
    out = tmp_path / "run"
    switches = [
        "recurrent=true",
        "gru_size=16",
        "normalize_obs=true",
        "normalize_reward=true",
        "lr_schedule=cosine",
        "ent_schedule=linear",
        "target_kl_stop=true",
        "target_kl=0.001",
        "ent_coef_end=0.002",
    ]
    args = ["train", "--env", "MemoryChain-bsuite", "--num-envs", "8", "--num-seeds", "2"]
    args += ["--total-timesteps", str(8 * 16 * 6), "--set", "num_steps=16"]
    for item in switches:
        args += ["--set", item]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["recurrent"] and config["normalize_obs"] and config["lr_schedule"] == "cosine"
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 6
    run0 = [row for row in rows if row["run"] == "0"]  # updates 0..5 in order
    assert float(run0[0]["ent_coef"]) == pytest.approx(0.01)
    assert float(run0[5]["ent_coef"]) == pytest.approx(0.002 + 0.008 / 6)
    assert float(run0[3]["learning_rate"]) == pytest.approx(2.5e-4 * 0.5 * (1 + np.cos(np.pi / 2)))
    assert {int(row["epochs"]) for row in rows} <= {1, 2, 3, 4}
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "4"]) == 0
    assert (out / "eval.json").exists()


def test_resume_refuses_saved_hyperparams_that_are_not_numbers(tmp_path, monkeypatch, capsys):
    import purejaxppo.outputs.checkpoint

    meta = {"config": PPOConfig().to_dict(), "hyperparams": {"gamma": True}, "sweep": {}}
    meta |= {"name": "cartpole", "seed": 0, "num_seeds": 1, "loop": {"chunk_updates": 1}}
    monkeypatch.setattr(purejaxppo.outputs.checkpoint, "read_meta", lambda out: meta)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is incomplete or invalid: hyperparams: gamma must be a number, got True" in err


def test_a_hundred_million_seeds_are_refused_at_once(monkeypatch, capsys):
    import purejaxppo.runs.population

    def never(*args, **kwargs):
        raise AssertionError("the population was built before the fit check")

    monkeypatch.setattr(purejaxppo.runs.population, "build_population", never)
    assert main(["train", "--num-seeds", str(10**8), "--out", "/tmp/purejaxppo-never"]) == 2
    err = capsys.readouterr().err
    assert "100000000 run(s) x 4 envs x 128 steps need about" in err and err.count("\n") == 1


def test_a_partial_config_file_trains_with_the_defaults(tmp_path):
    path = tmp_path / "partial.json"
    # 2048 steps: the programs of test_nan_loss_is_reported_with_its_update (the suite's
    # compilation cache compiles them once).
    path.write_text(json.dumps({"config": {"env": "CartPole-v1", "total_timesteps": 2048}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    written = json.loads((out / "config.json").read_text())
    assert written["config"] == json.loads(json.dumps(PPOConfig(total_timesteps=2048).to_dict()))
    assert written["tuning"]["backend"] == "cpu" and written["loop"]["chunk_updates"] == 1


def test_train_help_lists_every_setting_from_its_docstring(capsys):
    from purejaxppo.config import Hyperparams, field_docs

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in (PPOConfig, Hyperparams):
        for name, doc in field_docs(cls).items():
            assert f"{name} (default {getattr(cls(), name)!r}): {doc}" in text
