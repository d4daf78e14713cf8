"""Rendering: the recorded episodes are the evaluation's episodes; one frame per step; a
deterministic render repeats, a sampled one and another seed differ; MP4, gymnax's MinAtar
drawing and XLand-MiniGrid's own; envs without a drawing and missing extras are refused with
one line, before anything runs."""

import builtins
import errno
import os
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import trainers_compiled_fast
from gymnax.environments import spaces
from PIL import Image
from suite_helpers import forbid_compiling

from purejaxppo import FunctionalEnv, Hyperparams, PPOConfig, make_env, make_train
from purejaxppo.cli.main import main
from purejaxppo.errors import ConfigError
from purejaxppo.outputs import render
from purejaxppo.ppo.evaluate import evaluate_policy, fresh_episodes, record_first_episodes
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


# On the tests of `cartpole`: one xdist worker compiles its init once.
shares_cartpole = pytest.mark.xdist_group("render_cartpole")


@pytest.fixture(scope="module")
def cartpole():
    return initial_policy(PPOConfig())


@pytest.mark.parametrize("deterministic", [True, False])
@shares_cartpole
def test_recorded_episodes_are_the_evaluations_episodes(cartpole, deterministic):
    trainer, policy = cartpole
    key = jax.random.key(3)
    record = jax.jit(
        lambda p, k: record_first_episodes(trainer, p, fresh_episodes(trainer, k, 4), deterministic)
    )(policy, key)
    evaluated = evaluate_policy(trainer, policy, key, 4, deterministic)
    for field in ("returns", "lengths", "finished"):
        np.testing.assert_array_equal(getattr(record.result, field), getattr(evaluated, field))
    assert record.rewards.shape == (500, 4) and record.env_states.x.shape == (500, 4)
    lengths = np.asarray(record.result.lengths)
    summed = [float(np.sum(record.rewards[: lengths[e], e])) for e in range(4)]
    np.testing.assert_allclose(summed, record.result.returns)


@shares_cartpole
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


@shares_cartpole
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


@shares_cartpole
def test_mp4_is_written_with_ffmpeg(cartpole, tmp_path):
    import imageio_ffmpeg

    trainer, policy = cartpole
    path = tmp_path / "episode.mp4"
    rendered = render.render_episodes(trainer, policy, path, jax.random.key(0))
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == rendered.frames == rendered.lengths[0]


@pytest.mark.parametrize(
    "config",
    [
        PPOConfig(env="Breakout-MinAtar", num_envs=4, num_steps=8),  # gymnax's matplotlib
        PPOConfig(env="xminigrid:MiniGrid-Empty-5x5", num_envs=4, num_steps=8),  # its own
        PPOConfig(env="DeepSea-bsuite", num_envs=4, num_steps=8),  # this package's
        PPOConfig(env="Pendulum-v1", normalize_obs=True),  # continuous, through gymnasium
        PPOConfig(recurrent=True, gru_size=8),  # a recurrent policy
    ],
    ids=["minatar", "xminigrid", "deepsea", "continuous", "recurrent"],
)
def test_drawings_of_every_kind(config, tmp_path):
    trainer, policy = initial_policy(config)
    path = tmp_path / "episode.gif"
    rendered = render.render_episodes(trainer, policy, path, jax.random.key(0))
    frames = gif_frames(path)
    assert len(frames) == rendered.frames == rendered.lengths[0] > 1
    body = frames[0][60:]
    assert body.std() > 10  # a drawing, not a blank frame


def test_an_env_without_a_drawing_or_a_time_limit_is_refused():
    trainer = make_train(PPOConfig(env="MemoryChain-bsuite", num_envs=4, num_steps=8))
    with pytest.raises(ConfigError, match=r"^MemoryChain-bsuite has no drawing: render draws "):
        render.check_drawable(trainer.env)
    endless = FunctionalEnv(
        "endless",
        lambda key: (jnp.zeros(2), jnp.zeros(())),
        lambda key, state, action: (jnp.zeros(2), state, jnp.zeros(()), jnp.zeros((), bool)),
        spaces.Box(-1.0, 1.0, (2,), jnp.float32),
        spaces.Discrete(2),
        draw=lambda state: np.zeros((4, 4, 3), np.uint8),
    )
    with pytest.raises(ConfigError, match=r"^endless has no time limit: render plays episodes"):
        render.check_drawable(make_env(endless))


def test_bad_output_names_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^path must end in \.gif or \.mp4, got 'episode\.png'"):
        render.check_movie_path(tmp_path / "episode.png")
    monkeypatch.setattr(render, "ffmpeg_path", lambda: None)
    with pytest.raises(ConfigError, match=r"^--out: an \.mp4 needs imageio-ffmpeg"):
        render.check_movie_path(tmp_path / "episode.mp4", "--out")
    render.check_movie_path(tmp_path / "episode.gif")  # a GIF needs nothing more


def test_an_unwritable_movie_path_is_refused_in_one_line(tmp_path, monkeypatch):
    """Before the episodes: a path under a file, or in a directory where no file can be made
    (read-only: as root a chmod does not stop writes, so the probe's write fails instead).
    After them: a write that fails all the same, as a one-line `ConfigError`."""
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ConfigError, match=r"^--out: cannot write .*afile is a file, not a dir"):
        render.check_movie_path(afile / "x.gif", "--out")
    (tmp_path / "dir.gif").mkdir()
    with pytest.raises(ConfigError, match=r"^path: .*dir\.gif is a directory$"):
        render.check_movie_path(tmp_path / "dir.gif")
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))

    def refuse(*args, **kwargs):
        raise read_only

    monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
    with pytest.raises(ConfigError, match=r"^path: cannot write .*x\.gif: Read-only file system$"):
        render.check_movie_path(tmp_path / "new" / "x.gif")
    monkeypatch.undo()
    render.check_movie_path(tmp_path / "new" / "x.gif")  # writable: and nothing was made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir.gif"]

    setup = make_env("DeepSea-bsuite")
    states = [types.SimpleNamespace(row=0, column=0)] * 2
    monkeypatch.setattr(Image.Image, "save", refuse)
    path = tmp_path / "movie" / "x.gif"
    with pytest.raises(OSError, match=r"Read-only file system: '.*x\.gif'$") as failed:
        render.write_animation(setup, states, ["a", "b"], path)
    assert failed.value.filename == str(path)


def test_the_drawings_without_their_extra_are_refused_with_the_install_line(monkeypatch):
    real_import = builtins.__import__

    def without_pygame(name, *args, **kwargs):
        if name == "pygame":
            raise ImportError(name, name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pygame", raising=False)
    monkeypatch.setattr(builtins, "__import__", without_pygame)
    trainer = make_train(PPOConfig())  # the check needs its env, not a compiled init
    with pytest.raises(
        ConfigError, match=r"rendering needs pygame: pip install 'purejaxppo\[render\]'"
    ):
        render.check_drawable(trainer.env)


# The command-line tests below draw their runs: the training's float rounding is not tested.
@pytest.fixture
def compiled_fast():
    """The trainers this test makes compile fast (`fast_compile.trainers_compiled_fast`)."""
    with trainers_compiled_fast():
        yield


TINY = [
    "--num-envs", "4", "--set", "num_steps=8", "--set", "update_epochs=1",
    "--set", "num_minibatches=2", "--total-timesteps", "64", "--no-progress",
]  # fmt: skip


@pytest.mark.usefixtures("compiled_fast")
def test_render_command_samples_or_not_and_refuses_bad_flags(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env", "DeepSea-bsuite", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    written = {}
    for mode, word in (("--deterministic", "deterministic"), ("--sample", "sampled")):
        out = tmp_path / f"{word}.gif"
        assert main(["render", str(run), mode, "--episodes", "3", "--out", str(out)]) == 0
        said = capsys.readouterr().out
        assert said.startswith(f"wrote {out}: ") and f"{word} episode returns" in said
        written[mode] = [frame.tobytes() for frame in gif_frames(out)]
    assert written["--deterministic"] != written["--sample"]
    for flags, message in (
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--out", str(tmp_path / "x.png")], "--out must end in .gif or .mp4, got 'x.png'"),
        (["--seed", "-1"], "--seed must lie in 0..4294967295, got -1"),
        (["--run", "3"], "--run must lie in 0..0, got 3"),
        (["--sample", "--deterministic"], "not allowed with argument"),
    ):
        assert main(["render", str(run), *flags]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.usefixtures("compiled_fast")
def test_render_every_is_refused_for_an_undrawable_env_before_compiling(
    tmp_path, monkeypatch, capsys
):
    forbid_compiling(monkeypatch)
    out = tmp_path / "run"
    args = ["train", "--env", "MemoryChain-bsuite", *TINY, "--render-every", "1", "--out", str(out)]
    assert main(args) == 2
    assert "MemoryChain-bsuite has no drawing" in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory was made
    run = tmp_path / "undrawable"
    assert main(["train", "--env", "MemoryChain-bsuite", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["render", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("purejaxppo: error: MemoryChain-bsuite has no drawing")
    assert err.count("\n") == 1 and not (run / "renders").exists()
    assert main(["train", *TINY, "--render-every", "-1"]) == 2
    assert "--render-every must be an integer >= 0" in capsys.readouterr().err
