"""The metric sinks beyond the CSV: one tiny CartPole run with TensorBoard, an offline
Weights & Biases tracker and a GIF every third chunk, read back from the files they wrote."""

import csv
import json
import signal
import sys

import numpy as np
import pytest
from fast_compile import trainers_compiled_fast
from suite_helpers import forbid_compiling, stop_after
from tracker_files import tensorboard_events, tensorboard_scalars, wandb_runs

from purejaxppo.cli.main import main

TINY = [
    "--env", "CartPole-v1", "--num-envs", "4", "--set", "num_steps=8", "--set",
    "update_epochs=1", "--set", "num_minibatches=2", "--num-seeds", "2", "--no-progress",
    "--total-timesteps", str(4 * 8 * 12), "--chunk-updates", "2",
]  # fmt: skip


# Nothing here is compared bit for bit with a run compiled or chunked otherwise, nor must
# learn a return: its trainers compile fast.
pytestmark = pytest.mark.usefixtures("compiled_fast")


@pytest.fixture
def compiled_fast():
    """The trainers this test makes compile fast (`fast_compile.trainers_compiled_fast`)."""
    with trainers_compiled_fast():
        yield


# On the tests of `tracked_run`: one xdist worker trains it once.
shares_tracked_run = pytest.mark.xdist_group("tracked_run")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """12 updates in chunks of 2 (6 chunks): evaluations after chunks 2, 4, 6 (updates 4, 8,
    12), GIFs after chunks 3 and 6 (updates 6, 12)."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    flags = ["--eval-every", "2", "--eval-episodes", "3", "--render-every", "3"]
    tracker = ["--tensorboard", "--wandb", "purejaxppo-tests", "--wandb-group", "tiny"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("WANDB_DIR", raising=False)
        with trainers_compiled_fast():
            assert main(["train", *TINY, *flags, *tracker, "--out", str(out)]) == 0
    return out


def metric_rows(out):
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@shares_tracked_run
def test_wandb_has_one_tracker_run_per_training_run_with_its_config(tracked_run):
    runs = wandb_runs(tracked_run)
    assert [r["name"] for r in runs] == ["run-run-0", "run-run-1"]
    for index, run in enumerate(runs):
        assert run["project"] == "purejaxppo-tests" and run["group"] == "tiny"
        config = run["config"]
        assert config["seed"] == index and config["run"] == index
        assert config["env"] == "CartPole-v1" and config["config"]["num_steps"] == 8
        assert config["hyperparams"]["learning_rate"] == 2.5e-4
        assert config["population"]["runs"] == 2


@shares_tracked_run
def test_wandb_history_holds_the_csv_metrics_and_the_evaluations(tracked_run):
    rows = metric_rows(tracked_run)
    for index, run in enumerate(wandb_runs(tracked_run)):
        trained = [h for h in run["history"] if "train/total_loss" in h]
        assert [h["update"] for h in trained] == list(range(1, 13))
        assert [h["env_steps"] for h in trained] == [32 * u for u in range(1, 13)]
        expected = [float(r["total_loss"]) for r in rows if r["run"] == str(index)]
        np.testing.assert_allclose([h["train/total_loss"] for h in trained], expected, rtol=1e-5)
        evaluated = {h["update"]: h["eval/return"] for h in trained if "eval/return" in h}
        in_csv = {
            int(r["update"]): float(r["eval_return"])
            for r in rows
            if r["run"] == str(index) and r["eval_return"]
        }
        assert sorted(evaluated) == [4, 8, 12]
        assert evaluated == pytest.approx(in_csv, rel=1e-5)


@shares_tracked_run
def test_wandb_summary_holds_each_runs_final_return(tracked_run):
    stats = json.loads((tracked_run / "summary.json").read_text())["final_return"]
    tracked = [run["summary"]["final_return"] for run in wandb_runs(tracked_run)]
    assert tracked == pytest.approx(stats["per_run"], abs=1e-4) and stats["max"] > 0


@shares_tracked_run
def test_wandb_run_0_holds_the_gifs_and_the_final_plots(tracked_run):
    history = wandb_runs(tracked_run)[0]["history"]
    movies = [h for h in history if "render/run-0" in h]
    assert [m["env_steps"] for m in movies] == [32 * 6, 32 * 12]
    assert all(m["render/run-0"]["_type"] == "video-file" for m in movies)
    plots = [h for h in history if "plots/learning_curve" in h]
    assert len(plots) == 1 and plots[0]["plots/learning_curve"]["_type"] == "image-file"
    assert not [h for h in wandb_runs(tracked_run)[1]["history"] if "render/run-0" in h]


@shares_tracked_run
def test_the_gifs_are_in_the_run_directory_and_in_tensorboard(tracked_run):
    gifs = sorted(p.name for p in (tracked_run / "renders").iterdir())
    assert gifs == ["update-0000006.gif", "update-0000012.gif"]
    images = [
        (event.step, value.image)
        for event in tensorboard_events(tracked_run / "tensorboard" / "run-0000-seed-0")
        for value in event.summary.value
        if value.tag == "render/run-0"
    ]
    assert [step for step, _ in images] == [32 * 6, 32 * 12]
    for (_, image), name in zip(images, gifs, strict=True):
        assert image.encoded_image_string == (tracked_run / "renders" / name).read_bytes()
    scalars = tensorboard_scalars(tracked_run / "tensorboard" / "run-0000-seed-0")
    assert len(scalars["train/total_loss"]) == 12 and len(scalars["eval/return"]) == 3


def test_wandb_without_its_extra_is_refused_before_compiling(tmp_path, monkeypatch, capsys):
    forbid_compiling(monkeypatch)
    monkeypatch.setitem(sys.modules, "wandb", None)  # its import raises ImportError
    out = tmp_path / "run"
    assert main(["train", *TINY, "--wandb", "p", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "purejaxppo: error: --wandb needs wandb: pip install 'purejaxppo[wandb]'\n"
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--wandb-group", "g"], "--wandb-group names tracker runs: it needs wandb_project"),
        (["--wandb", " "], "--wandb must be a non-empty name, got ' '"),
    ],
)
def test_bad_tracker_flags_are_refused(flags, message, capsys):
    assert main(["train", *TINY, *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_resumed_run_logs_on_into_the_same_tracker_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    out = tmp_path / "run"
    stop_after(monkeypatch, 2)  # 2 chunks of 2 updates, then a SIGTERM and a checkpoint
    six = [*TINY, "--total-timesteps", str(4 * 8 * 6)]
    assert main(["train", *six, "--wandb", "p", "--out", str(out)]) == 128 + signal.SIGTERM
    stop_after(monkeypatch, 100)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # --wandb was saved
    runs = wandb_runs(out)
    assert [r["name"] for r in runs] == ["run-run-0"] * 2 + ["run-run-1"] * 2
    for first, second in (runs[:2], runs[2:]):
        assert first["id"] == second["id"]
        updates = [
            [h["update"] for h in r["history"] if "train/total_loss" in h] for r in (first, second)
        ]
        assert sorted(updates) == [[1, 2, 3, 4], [5, 6]]  # each update once, none replayed
    assert runs[0]["id"] != runs[2]["id"]


def test_a_tracker_that_cannot_start_is_one_line(tmp_path, monkeypatch, capsys):
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty). call wandb.login()")

    monkeypatch.setattr(wandb, "init", refuse)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--wandb", "p", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "purejaxppo: error: --wandb 'p': the tracker did not start (api_key not configured "
        "(no-tty). call wandb.login()); WANDB_MODE=offline logs without an account\n"
    )


def test_wandb_dir_moves_the_tracker_files_and_the_last_chunk_is_rendered(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(elsewhere))
    out = tmp_path / "run"
    short = [*TINY, "--total-timesteps", "64"]  # the last one counts: 2 updates
    tracker = ["--wandb", "p", "--wandb-name", "mine", "--render-every", "4"]
    assert main(["train", *short, *tracker, "--out", str(out)]) == 0
    assert not (out / "wandb").exists()
    # One chunk of 2 updates: not a 4th chunk, but the last, so its policy is drawn.
    assert [p.name for p in (out / "renders").iterdir()] == ["update-0000002.gif"]
    runs = wandb_runs(elsewhere)
    assert [r["name"] for r in runs] == ["mine-run-0", "mine-run-1"]
    assert {r["group"] for r in runs} == {"run"}  # the output directory's name
    assert [len([h for h in r["history"] if "train/entropy" in h]) for r in runs] == [2, 2]
