"""Episodes of a trained policy as an animation: GIF, or MP4 where ffmpeg is installed.

`render_episodes` plays fresh episodes in one jitted program (`ppo.evaluate.
record_first_episodes`: every step's env state kept), then draws them on the host, one frame
per step, each under a title with the env, the run, the update and the return so far.
gymnax's own visualiser draws the envs it knows (`GYMNAX_DRAWN`: classic control through
gymnasium's renderer with gymnax's state mapping, Catch, MinAtar and the misc grid and point
envs through its matplotlib drawings; `pip install 'purejaxppo[render]'` brings what it
imports). An env with a `draw` function of its own (XLand-MiniGrid's renderer) is drawn with
that, and DeepSea with a small drawing here (`OWN_DRAWINGS`). Any other env, or one without a
time limit, is refused with a one-line `ConfigError` before anything runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purejaxppo.envs.setup import EnvSetup
from purejaxppo.errors import ConfigError
from purejaxppo.outputs.files import writing
from purejaxppo.outputs.plots import pyplot
from purejaxppo.ppo.evaluate import (
    EpisodeRecord,
    default_max_steps,
    fresh_episodes,
    record_first_episodes,
    resolve_max_steps,
)
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import Policy

GYMNAX_DRAWN = frozenset(
    {
        "Acrobot-v1",
        "CartPole-v1",
        "Pendulum-v1",
        "MountainCar-v0",
        "MountainCarContinuous-v0",
        "Catch-bsuite",
        "Asterix-MinAtar",
        "Breakout-MinAtar",
        "Freeway-MinAtar",
        "Seaquest-MinAtar",
        "SpaceInvaders-MinAtar",
        "Pong-misc",
        "PointRobot-misc",
        "MetaMaze-misc",
        "FourRooms-misc",
    }
)
"""The envs `gymnax.visualize.Visualizer` draws."""

MOVIE_SUFFIXES = (".gif", ".mp4")
CLASSIC_CONTROL = frozenset(
    {"Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0"}
)
"""The gymnax envs drawn by gymnasium's renderer (with gymnax's mapping of their states)."""


@dataclasses.dataclass(frozen=True)
class Rendered:
    """What `render_episodes` wrote: the file, its frame count and each episode's return and
    length (`finished` False: cut at the env's step limit)."""

    path: Path
    frames: int
    returns: list[float]
    lengths: list[int]
    finished: list[bool]


def check_drawable(setup: EnvSetup) -> None:
    """A one-line `ConfigError` unless `setup`'s env has a time limit (episodes are played up
    to it) and some drawing of it exists and can load."""
    if default_max_steps(setup) is None:
        raise ConfigError(f"{setup.name} has no time limit: render plays episodes up to one")
    if own_drawing(setup) is not None:
        return
    if setup.name not in GYMNAX_DRAWN:
        raise ConfigError(
            f"{setup.name} has no drawing: render draws {', '.join(sorted(GYMNAX_DRAWN))}, "
            f"{', '.join(OWN_DRAWINGS)} and XLand-MiniGrid envs"
        )
    gymnax_visualizer()


def own_drawing(setup: EnvSetup) -> Callable[[Any], np.ndarray] | None:
    """A drawing that needs no extra: the env's own `draw` (a `FunctionalEnv`'s, given the
    wrapped state) or this module's drawing of a gymnax env that gymnax does not draw."""
    draw = getattr(setup.env, "draw", None)
    if draw is not None:
        return lambda state: np.asarray(draw(state.env_state))
    if setup.name in OWN_DRAWINGS:
        return functools.partial(OWN_DRAWINGS[setup.name], setup)
    return None


def draw_deep_sea(setup: EnvSetup, state: Any) -> np.ndarray:
    """DeepSea's `size x size` grid: the agent's cell blue, the treasure (bottom right) gold,
    40 pixels a cell."""
    size, cell = int(setup.env.size), 40
    image = np.full((size * cell, size * cell, 3), 240, np.uint8)
    image[::cell], image[:, ::cell] = 190, 190  # the grid's lines

    def fill(row: int, column: int, colour: tuple[int, int, int]) -> None:
        image[
            row * cell + 5 : (row + 1) * cell - 4, column * cell + 5 : (column + 1) * cell - 4
        ] = colour

    fill(size - 1, size - 1, (230, 180, 30))
    row, column = (min(int(v), size - 1) for v in (state.row, state.column))
    fill(row, column, (40, 90, 200))
    return image


OWN_DRAWINGS: dict[str, Callable[[EnvSetup, Any], np.ndarray]] = {"DeepSea-bsuite": draw_deep_sea}
"""Small drawings of gymnax envs that gymnax's visualiser does not draw."""


def gymnax_visualizer() -> Any:
    """gymnax's `Visualizer` class, or a `ConfigError` with the install line (it imports
    gymnasium, pygame and seaborn for its drawings)."""
    pyplot()  # the Agg backend before gymnax imports pyplot
    # pygame draws off-screen: no window and no sound device.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        import pygame  # noqa: F401 (gymnasium's classic-control renderer draws with it)
        from gymnax.visualize import Visualizer
    except ImportError as error:
        raise ConfigError(
            f"rendering needs {error.name}: pip install 'purejaxppo[render]'"
        ) from None
    return Visualizer


def check_movie_path(path: Path, name: str = "path") -> None:
    """A `ConfigError` (naming the field or flag `name`) unless `path` ends in .gif, or in
    .mp4 with imageio-ffmpeg's ffmpeg to write it, and can be written (`check_writable`):
    found before any episode is played."""
    suffix = path.suffix.lower()
    if suffix not in MOVIE_SUFFIXES:
        raise ConfigError(f"{name} must end in .gif or .mp4, got {path.name!r}")
    if suffix == ".mp4" and ffmpeg_path() is None:
        raise ConfigError(
            f"{name}: an .mp4 needs imageio-ffmpeg (pip install 'purejaxppo[render]'); "
            ".gif needs nothing more"
        )
    check_writable(path, name)


def check_writable(path: Path, name: str) -> None:
    """A `ConfigError` unless a file can be written at `path`: it is no directory, and the
    nearest of its parents that exists is a directory in which a probe file can be made
    (and is removed again). Nothing else is created: the directories are made when the file
    is written, so a check that fails later leaves no trace."""
    if path.is_dir():
        raise ConfigError(f"{name}: {path} is a directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{name}: cannot write {path}: {parent} is a file, not a directory")
    probe = parent / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{name}: cannot write {path}: {os_reason(error)}") from None


def os_reason(error: OSError) -> str:
    """The one-line reason of an `OSError` (ffmpeg's carry its whole log)."""
    return error.strerror or (str(error).splitlines() or [type(error).__name__])[0]


def ffmpeg_path() -> str | None:
    """imageio-ffmpeg's ffmpeg (its own, or the one `IMAGEIO_FFMPEG_EXE` names); None if
    there is none."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


@functools.lru_cache(maxsize=8)
def recording_program(
    trainer: Trainer, episodes: int, deterministic: bool, max_steps: int
) -> Callable[[Policy, jax.Array], EpisodeRecord]:
    """`record_first_episodes` for one run's policy, jitted once per setting."""

    def record(policy: Policy, key: jax.Array) -> EpisodeRecord:
        fresh = fresh_episodes(trainer, key, episodes, max_steps)
        return record_first_episodes(trainer, policy, fresh, deterministic)

    return jax.jit(record)


def record_episodes(
    trainer: Trainer, policy: Policy, key: jax.Array, episodes: int, deterministic: bool
) -> EpisodeRecord:
    """`episodes` fresh episodes of one run's `policy` (leaves without a run axis), played
    to the env's time limit, on the host."""
    max_steps = resolve_max_steps(trainer.env, None)
    program = recording_program(trainer, int(episodes), bool(deterministic), max_steps)
    return jax.device_get(program(policy, key))


def episode_frames(record: EpisodeRecord, label: str) -> tuple[list[Any], list[str]]:
    """Each episode's steps in order: the env state before each step and its title (`label`,
    the episode, the step, the return so far including that step's reward)."""
    states, titles = [], []
    lengths, rewards = np.asarray(record.result.lengths), np.asarray(record.rewards)
    for episode, length in enumerate(lengths.tolist()):
        returns = np.cumsum(rewards[:length, episode], dtype=np.float64)
        for t in range(length):
            states.append(jax.tree.map(lambda leaf, t=t, e=episode: leaf[t, e], record.env_states))
            titles.append(
                f"{label}\nepisode {episode + 1}/{len(lengths)}  step {t + 1}  "
                f"return {returns[t]:.1f}"
            )
    return states, titles


def write_animation(
    setup: EnvSetup, states: Sequence[Any], titles: Sequence[str], path: Path
) -> None:
    """Draw one frame per state, each under its title, into `path` (.gif or .mp4; checked
    by the caller, `render_episodes`, before the episodes are played). A write that fails
    all the same (the disk filled, the file system turned read-only) is an `OSError` naming
    `path`: a failed write, not bad input."""
    with frame_source(setup) as draw:
        frames = [
            titled_frame(draw(state), title) for state, title in zip(states, titles, strict=True)
        ]
    interval_ms = 50 if setup.name in CLASSIC_CONTROL else 100  # gymnax's own frame rates
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".gif":
            first, *rest = frames
            first.save(path, save_all=True, append_images=rest, duration=interval_ms, loop=0)
        else:
            write_mp4(path, [np.asarray(frame) for frame in frames], 1000 / interval_ms)


def titled_frame(image: np.ndarray, title: str) -> Any:
    """`image` `uint8 [H, W, 3]` below a white band holding `title` (a PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    lines = title.count("\n") + 1
    band = 8 + 18 * lines
    height, width = image.shape[:2]
    frame = Image.new("RGB", (width, height + band), "white")
    frame.paste(Image.fromarray(np.ascontiguousarray(image[..., :3])), (0, band))
    font = ImageFont.load_default(size=14)
    ImageDraw.Draw(frame).multiline_text((6, 4), title, fill="black", font=font, spacing=4)
    return frame


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """H.264 through ffmpeg (frames padded to even sizes, as the codec needs)."""
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    even = [np.pad(f, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge") for f in frames]
    size = (width + width % 2, height + height % 2)
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, macro_block_size=1)
    writer.send(None)
    for frame in even:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@contextlib.contextmanager
def frame_source(setup: EnvSetup) -> Iterator[Callable[[Any], np.ndarray]]:
    """A function from one env state to its RGB image `uint8 [H, W, 3]`: an `own_drawing`;
    for classic control, gymnasium's renderer fed by gymnax's state mapping (one
    renderer for every frame); else gymnax's visualiser drawn on a matplotlib canvas."""
    own = own_drawing(setup)
    if own is not None:
        yield own
        return
    visualizer = gymnax_visualizer()
    if setup.name in CLASSIC_CONTROL:
        with classic_control_renderer(setup) as render:
            yield render
        return
    yield from visualizer_canvas(visualizer, setup)


@contextlib.contextmanager
def classic_control_renderer(setup: EnvSetup) -> Iterator[Callable[[Any], np.ndarray]]:
    """gymnasium's renderer of `setup`'s env, its physics set from the gymnax params, drawing
    gymnax states (mapped by gymnax's `vis_gym`): one renderer for every frame, where
    gymnax's visualiser makes one a frame."""
    import gymnasium
    from gymnax.visualize import vis_gym

    env = gymnasium.make(setup.name, render_mode="rgb_array")
    env.reset(seed=0)
    vis_gym.set_gym_params(env.unwrapped, setup.name, setup.params)

    def render(state: Any) -> np.ndarray:
        env.unwrapped.state = vis_gym.get_gym_state(state, setup.name)
        if setup.name == "Pendulum-v1":  # its renderer draws the last torque
            env.unwrapped.last_u = np.asarray(state.last_u, np.float64)
        return np.asarray(env.render())

    try:
        yield render
    finally:
        env.close()


def visualizer_canvas(visualizer: Any, setup: EnvSetup) -> Iterator[Callable[[Any], np.ndarray]]:
    """gymnax's visualiser's own drawing of each state, read back from its figure."""
    plt = pyplot()
    states: list[Any] = []
    drawing = visualizer(setup.env, setup.params, states)

    def render(state: Any) -> np.ndarray:
        if not states:
            states.append(state)
            drawing.init()
        states[0] = state
        drawing.update(0)
        drawing.ax.set_title("")
        drawing.fig.canvas.draw()
        return np.asarray(drawing.fig.canvas.buffer_rgba())[..., :3].copy()

    try:
        yield render
    finally:
        plt.close(drawing.fig)


def render_episodes(
    trainer: Trainer,
    policy: Policy,
    path: Path,
    key: jax.Array,
    episodes: int = 1,
    deterministic: bool = True,
    label: str = "",
) -> Rendered:
    """Play `episodes` fresh episodes of one run's `policy` (from `key`) and write them one
    after another to `path` (.gif or .mp4), one frame per step; `label` heads every title
    (default: the env's name). The env's drawing and the path are checked first."""
    check_drawable(trainer.env)
    check_movie_path(path)
    record = record_episodes(trainer, policy, key, episodes, deterministic)
    return draw_record(trainer, record, path, label)


def draw_record(trainer: Trainer, record: EpisodeRecord, path: Path, label: str = "") -> Rendered:
    """Write recorded episodes to `path` (`render_episodes` without its checks, for a caller
    that made them once before its run: the render hook, the `render` command)."""
    states, titles = episode_frames(record, label or trainer.env.name)
    write_animation(trainer.env, states, titles, path)
    result = record.result
    return Rendered(
        path=path,
        frames=len(states),
        returns=np.asarray(result.returns, np.float64).tolist(),
        lengths=np.asarray(result.lengths).tolist(),
        finished=np.asarray(result.finished).tolist(),
    )


def render_title(session: Any, run: int, updates_done: int) -> str:
    """The first title line of a session's run: env, run, seed and updates done."""
    seed = session.population.seeds[run]
    return f"{session.spec.config.env}  run {run} (seed {seed})  update {updates_done}"
