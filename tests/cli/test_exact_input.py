"""Exact input: the command line does what was typed or refuses it in one line, before
anything slow. Unknown keys of a config file, a setting given twice, an empty path, a
directory asked for by a trailing slash, an output path that cannot be written, a network
too wide and an evaluation too large for memory. No test here trains: the run's files and
the restore are stood in for where a command needs them."""

import errno
import json
import os
import pathlib

import pytest
from suite_helpers import forbid_compiling

import purejaxppo.session
from purejaxppo import PPOConfig, make_env
from purejaxppo.cli.main import main
from purejaxppo.cli.values import output_file
from purejaxppo.outputs.render import Rendered
from purejaxppo.runs import memory_budget
from purejaxppo.runs.spec import LoopOptions, RunSpec

GIB = 2**30


def one_line_error(capsys) -> str:
    """The command's stderr, which must be exactly one `purejaxppo: error:` line."""
    err = capsys.readouterr().err
    assert err.startswith("purejaxppo: error: ") and err.count("\n") == 1, err
    return err


def saved_run(monkeypatch, spec: RunSpec | None = None) -> list[str]:
    """Stand in for a trained run's files: `load_saved_run` gives `spec` (a CartPole run by
    default); restoring its checkpoint fails the test unless a later stand-in replaces it.
    Returns the log of what the command read."""
    spec = spec or RunSpec("cartpole", PPOConfig())
    read: list[str] = []

    def load_saved_run(out):
        read.append("saved run")
        return spec, LoopOptions()

    def never_open(*args, **kwargs):
        raise AssertionError("the checkpoint was restored before the input was checked")

    monkeypatch.setattr(purejaxppo.session, "load_saved_run", load_saved_run)
    monkeypatch.setattr(purejaxppo.session.TrainSession, "open", never_open)
    return read


class FakeSession:
    """What `eval` and `render` use of a restored session, with nothing restored."""

    updates_done = 0

    @classmethod
    def open(cls, *args, **kwargs):
        return cls()


# 1. Unknown keys of a config file


def test_a_config_file_with_unknown_keys_is_refused_naming_each(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    path = tmp_path / "c.json"
    document = {"hyperparameters": {"learning_rate": 0.1}, "num_seed": 8}
    path.write_text(json.dumps(document | {"config": {"total_timesteps": 1024}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert f"cannot read config file {path}: unknown key(s) 'hyperparameters', 'num_seed'" in err
    assert "(known: name, env, config, hyperparams," in err
    assert not out.exists()


def test_a_config_file_with_a_key_given_twice_is_refused(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    path = tmp_path / "c.json"
    path.write_text('{"num_seeds": 2, "config": {"num_envs": 8, "num_envs": 16}}')
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = one_line_error(capsys)
    assert f"cannot read config file {path}: key(s) 'num_envs' given twice in one object" in err


# 2. A setting given twice


@pytest.mark.parametrize(
    "items",
    [
        ["num_envs=8", "num_envs=16"],
        ["num_envs=8", "num-envs=16"],
        ["learning_rate=1e-3", "learning_rate=1e-3"],
    ],
)
def test_a_setting_given_twice_in_set_is_refused(items, tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    args = ["train", "--out", str(tmp_path / "run")]
    for item in items:
        args += ["--set", item]
    assert main(args) == 2
    name = items[0].split("=")[0]
    assert f"--set {name} is given twice" in one_line_error(capsys)


def test_a_name_given_twice_in_sweep_or_search_is_still_refused(capsys):
    assert main(["train", "--sweep", "gamma=0.9", "--sweep", "gamma=0.99"]) == 2
    assert "--sweep gamma is given twice" in one_line_error(capsys)
    lr = "learning_rate=log:1e-4:1e-3"
    assert main(["train", "--search", lr, "--search", lr]) == 2
    assert "--search learning_rate is given twice" in one_line_error(capsys)


# 3. An empty path


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["train", "--out", ""], "--out"),
        (["train", "--resume", ""], "--resume"),
        (["train", "--compilation-cache", ""], "--compilation-cache"),
        (["train", "--config", ""], "--config"),
        (["train", "--replay-best", " "], "--replay-best"),
        (["eval", ""], "run_dir"),
        (["eval", "run", "--out", ""], "--out"),
        (["export", "run", "--out", ""], "--out"),
        (["export", "", "--out", "x"], "run_dir"),
        (["render", "run", "--out", ""], "--out"),
        (["render", ""], "run_dir"),
        (["bench", "--out", ""], "--out"),
        (["bench", "--profile", ""], "--profile"),
    ],
)
def test_an_empty_path_is_refused_naming_its_flag(args, flag, capsys):
    assert main(args) == 2
    assert f"argument {flag}: must be a path, got an empty string" in one_line_error(capsys)


def test_train_out_empty_leaves_the_current_directory_alone(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"mine": true}')
    assert main(["train", "--total-timesteps", "2048", "--out", ""]) == 2
    one_line_error(capsys)
    assert sorted(os.listdir(tmp_path)) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == '{"mine": true}'


# 4. A trailing slash asks for a directory


def test_output_file_takes_a_trailing_slash_or_a_directory_as_a_directory(tmp_path):
    default = tmp_path / "run" / "eval.json"
    assert output_file(None, default, "eval.json") == default
    assert output_file(f"{tmp_path}/new/", default, "eval.json") == tmp_path / "new" / "eval.json"
    assert output_file(str(tmp_path), default, "eval.json") == tmp_path / "eval.json"
    assert output_file(f"{tmp_path}/new", default, "eval.json") == tmp_path / "new"
    assert output_file(f"{tmp_path}/r.json", default, "eval.json") == tmp_path / "r.json"


def test_eval_out_with_a_trailing_slash_writes_eval_json_inside(tmp_path, monkeypatch, capsys):
    import purejaxppo.cli.evaluate

    saved_run(monkeypatch)
    monkeypatch.setattr(purejaxppo.session, "TrainSession", FakeSession)
    monkeypatch.setattr(purejaxppo.cli.evaluate, "evaluation_rows", lambda *args: [])
    out = tmp_path / "newdir"
    assert main(["eval", str(tmp_path / "run"), "--episodes", "2", "--out", f"{out}/"]) == 0
    assert out.is_dir() and json.loads((out / "eval.json").read_text())["episodes"] == 2
    assert capsys.readouterr().out.endswith(f"wrote {out / 'eval.json'}\n")


def test_render_out_with_a_trailing_slash_writes_run_k_gif_inside(tmp_path, monkeypatch, capsys):
    import purejaxppo.cli.render

    saved_run(monkeypatch, RunSpec("cartpole", PPOConfig(), num_seeds=3))
    monkeypatch.setattr(purejaxppo.session, "TrainSession", FakeSession)
    written = []

    def render_run(session, run, out, episodes, seed, deterministic):
        written.append(out)
        return Rendered(out, 1, [1.0], [1], [True])

    monkeypatch.setattr(purejaxppo.cli.render, "render_run", render_run)
    out = tmp_path / "movies"
    assert main(["render", str(tmp_path / "run"), "--run", "2", "--out", f"{out}/"]) == 0
    assert written == [out / "run-2.gif"]
    assert capsys.readouterr().out.startswith(f"wrote {out / 'run-2.gif'}: 1 frames")


# 5. An output path that cannot be written, found before the run is read


def test_render_out_under_a_file_is_refused_before_the_run_is_read(tmp_path, monkeypatch, capsys):
    read = saved_run(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    assert main(["render", str(tmp_path / "run"), "--out", str(afile / "x.gif")]) == 2
    err = one_line_error(capsys)
    assert f"--out: cannot write {afile / 'x.gif'}: {afile} is a file, not a directory" in err
    assert read == [] and afile.read_text() == "not a directory"


def test_render_out_in_a_read_only_directory_is_refused_before_the_run_is_read(
    tmp_path, monkeypatch, capsys
):
    """Tests run as root, which writes into a chmod 0o555 directory all the same: the
    read-only file system is stood in for by the write of the probe file failing so."""
    read = saved_run(monkeypatch)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_write_bytes = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if self.parent == readonly:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    out = readonly / "sub" / "x.gif"
    assert main(["render", str(tmp_path / "run"), "--out", str(out)]) == 2
    assert f"--out: cannot write {out}: Read-only file system" in one_line_error(capsys)
    assert read == [] and os.listdir(readonly) == []


# 6. A network too wide for memory


def test_a_network_too_wide_to_fit_is_refused_before_compiling(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    monkeypatch.setattr(memory_budget, "available_bytes", lambda: 16 * GIB)
    args = ["train", "--set", "hidden_sizes=30000,30000", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "hidden_sizes = (30000, 30000): one run's network of 1,800,450,003 parameters" in err
    assert "but 16.0 GiB is free" in err and err.endswith("use smaller hidden_sizes\n")


# 7. An evaluation too large for memory


def test_eval_episodes_that_cannot_fit_are_refused_before_the_restore(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    read = saved_run(monkeypatch)
    monkeypatch.setattr(memory_budget, "available_bytes", lambda: 16 * GIB)
    assert main(["eval", "run", "--episodes", "100000000"]) == 2
    err = one_line_error(capsys)
    assert "--episodes 100000000: evaluating 1 run(s) x 100,000,000 episodes needs about" in err
    fit = int(err.split("lower it to ")[1])
    assert 10**6 < fit < 10**8 and read == ["saved run"]
    env = make_env("CartPole-v1")
    memory_budget.check_evaluation_fits(PPOConfig(), env, 1, fit, free=16 * GIB)  # it fits
    assert os.listdir(tmp_path) == []  # no output directory made


def test_train_eval_episodes_that_cannot_fit_are_refused_before_compiling(
    tmp_path, monkeypatch, capsys
):
    forbid_compiling(monkeypatch)
    monkeypatch.setattr(memory_budget, "available_bytes", lambda: 16 * 2**30)
    args = ["train", "--env", "CartPole-v1", "--eval-every", "1", "--no-progress"]
    out = tmp_path / "run"
    assert main([*args, "--eval-episodes", "100000000", "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("purejaxppo: error: --eval-episodes 100000000: evaluating 1 run(s)")
    assert "episodes per run fit: lower it to " in err and err.count("\n") == 1
