"""Rendering: the recorded episodes are the evaluation's episodes; one frame per step; a
deterministic render repeats, a sampled one and another seed differ; MP4, gymnax's MinAtar
drawing and XLand-MiniGrid's own; envs without a drawing and missing extras are refused with
one line, before anything runs."""

import builtins
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.cli.main import main
from purejaxppo.errors import ConfigError
from purejaxppo.outputs import render
from purejaxppo.ppo.evaluate import evaluate_policy, record_first_episodes
from purejaxppo.ppo.types import Policy


def initial_policy(config: PPOConfig):
    trainer = make_train(config)
    state = jax.jit(trainer.init)(jax.random.key(1), Hyperparams())
    return trainer, Policy(state.params, None)


def gif_frames(path):
    with Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    return frames


@pytest.fixture(scope="module")
def cartpole():
    return initial_policy(PPOConfig())


@pytest.mark.parametrize("deterministic", [True, False])
def test_recorded_episodes_are_the_evaluations_episodes(cartpole, deterministic):
    trainer, policy = cartpole
    key = jax.random.key(3)
    record = jax.jit(
        lambda p, k: record_first_episodes(trainer, p, k, 4, deterministic), static_argnums=()
    )(policy, key)
    evaluated = evaluate_policy(trainer, policy, key, 4, deterministic)
    for field in ("returns", "lengths", "finished"):
        np.testing.assert_array_equal(getattr(record.result, field), getattr(evaluated, field))
    assert record.rewards.shape == (500, 4) and record.env_states.x.shape == (500, 4)
    lengths = np.asarray(record.result.lengths)
    summed = [float(np.sum(record.rewards[: lengths[e], e])) for e in range(4)]
    np.testing.assert_allclose(summed, record.result.returns)


def test_a_gif_has_one_frame_per_step_and_a_title(cartpole, tmp_path):
    trainer, policy = cartpole
    path = tmp_path / "two.gif"
    rendered = render.render_episodes(
        trainer, policy, path, jax.random.key(0), episodes=2, label="CartPole-v1 run 0"
    )
    frames = gif_frames(path)
    assert rendered.frames == len(frames) == sum(rendered.lengths)
    assert all(rendered.finished) and rendered.returns == [float(n) for n in rendered.lengths]
    assert len({f.tobytes() for f in frames}) > len(frames) // 2  # the cart and pole move
    top = frames[0][:40]  # the title band: text on white
    assert (top < 100).any() and (top == 255).mean() > 0.8


def test_deterministic_repeats_and_sampled_or_another_seed_differ(cartpole):
    trainer, policy = cartpole

    def actions(seed, deterministic):
        record = render.record_episodes(trainer, policy, jax.random.key(seed), 1, deterministic)
        return np.asarray(record.actions)[: int(record.result.lengths[0]), 0]

    same = actions(0, True)
    np.testing.assert_array_equal(same, actions(0, True))
    sampled = actions(0, False)
    n = min(len(same), len(sampled))
    assert (same[:n] != sampled[:n]).any()
    other = actions(1, True)
    n = min(len(same), len(other))
    assert len(same) != len(other) or (same[:n] != other[:n]).any()


def test_mp4_is_written_with_ffmpeg(cartpole, tmp_path):
    import imageio_ffmpeg

    trainer, policy = cartpole
    path = tmp_path / "episode.mp4"
    rendered = render.render_episodes(trainer, policy, path, jax.random.key(0))
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == rendered.frames == rendered.lengths[0]


@pytest.mark.parametrize("env", ["Breakout-MinAtar", "xminigrid:MiniGrid-Empty-5x5"])
def test_gymnax_and_xminigrid_drawings(env, tmp_path):
    trainer, policy = initial_policy(PPOConfig(env=env, num_envs=4, num_steps=8))
    path = tmp_path / "episode.gif"
    rendered = render.render_episodes(trainer, policy, path, jax.random.key(0))
    frames = gif_frames(path)
    assert len(frames) == rendered.frames == rendered.lengths[0] > 1
    body = frames[0][60:]
    assert body.std() > 10  # a drawing, not a blank frame


def test_an_env_without_a_drawing_is_refused():
    trainer, _ = initial_policy(PPOConfig(env="DeepSea-bsuite", num_envs=4, num_steps=8))
    with pytest.raises(ConfigError, match=r"^DeepSea-bsuite has no drawing: render draws "):
        render.check_drawable(trainer.spec)


def test_bad_output_names_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"must end in \.gif or \.mp4"):
        render.check_movie_path(tmp_path / "episode.png")
    monkeypatch.setattr(render, "ffmpeg_path", lambda: None)
    with pytest.raises(ConfigError, match=r"an \.mp4 needs ffmpeg"):
        render.check_movie_path(tmp_path / "episode.mp4")
    render.check_movie_path(tmp_path / "episode.gif")  # a GIF needs nothing more


def test_the_drawings_without_their_extra_are_refused_with_the_install_line(monkeypatch):
    real_import = builtins.__import__

    def without_pygame(name, *args, **kwargs):
        if name == "pygame":
            raise ImportError(name, name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pygame", raising=False)
    monkeypatch.setattr(builtins, "__import__", without_pygame)
    trainer, _ = initial_policy(PPOConfig())
    with pytest.raises(
        ConfigError, match=r"rendering needs pygame: pip install 'purejaxppo\[render\]'"
    ):
        render.check_drawable(trainer.spec)


TINY = [
    "--num-envs", "4", "--set", "num_steps=8", "--set", "update_epochs=1",
    "--set", "num_minibatches=2", "--total-timesteps", "64", "--no-progress",
]  # fmt: skip


def test_render_command_refuses_an_undrawable_run_and_bad_flags(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env", "DeepSea-bsuite", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["render", str(run)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("purejaxppo: error: DeepSea-bsuite has no drawing") and err.count("\n") == 1
    )
    assert not (run / "renders").exists()
    for flags, message in (
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--out", str(tmp_path / "x.png")], "the output must end in .gif or .mp4"),
        (["--run", "3"], "--run must lie in 0..0, got 3"),
        (["--sample", "--deterministic"], "not allowed with argument"),
    ):
        assert main(["render", str(run), *flags]) == 2
        assert message in capsys.readouterr().err


def test_render_every_is_refused_for_an_undrawable_env_before_compiling(
    tmp_path, monkeypatch, capsys
):
    import purejaxppo.runs.chunked

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before the input was checked")

    monkeypatch.setattr(purejaxppo.runs.chunked, "compile_chunked", no_compile)
    out = tmp_path / "run"
    args = ["train", "--env", "DeepSea-bsuite", *TINY, "--render-every", "1", "--out", str(out)]
    assert main(args) == 2
    assert "DeepSea-bsuite has no drawing" in capsys.readouterr().err
    assert main(["train", *TINY, "--render-every", "-1"]) == 2
    assert "--render-every must be an integer >= 0" in capsys.readouterr().err
