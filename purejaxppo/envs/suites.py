"""Environment suites: build an env from a name `SUITE:ENV`.

- `gymnax` (always installed): `CartPole-v1` or `gymnax:CartPole-v1`.
- `brax` (`pip install 'purejaxppo[brax]'`): `brax:inverted_pendulum`, `brax:ant`, ...
- `xminigrid` (`pip install 'purejaxppo[xminigrid]'`): `xminigrid:MiniGrid-Empty-8x8`, ...

A name without a prefix is a gymnax name. Brax and XLand-MiniGrid are imported only when
one of their envs is built (or listed); each is wrapped as a gymnax-1.0 environment by
`purejaxppo.envs.functional.FunctionalEnv`, which applies the episode time limit (as truncation)
and the auto-reset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import io
from collections.abc import Callable
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

from purejaxppo.envs.functional import FunctionalEnv
from purejaxppo.errors import ConfigError

BRAX_EPISODE_LENGTH = 1000  # brax's own default (brax.envs.create)


@dataclasses.dataclass(frozen=True)
class Suite:
    """A family of environments named `name:ENV`, installed with `purejaxppo[extra]`."""

    name: str
    module: str  # the package that must be importable
    extra: str | None  # the pip extra that installs it; None: always installed
    env_names: Callable[[], list[str]]
    build: Callable[[str], tuple[Environment, Any]]  # env name -> (env, params)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def install_command(self) -> str:
        return f"pip install 'purejaxppo[{self.extra}]'" if self.extra else ""


def split_env_name(name: str) -> tuple[str, str]:
    """`"brax:ant"` -> `("brax", "ant")`; a name without a prefix is gymnax's."""
    suite, sep, env = name.partition(":")
    return (suite, env) if sep else ("gymnax", name)


def make_named_env(name: str) -> tuple[Environment, Any]:
    """The env and default params for `SUITE:ENV` (or a gymnax name).

    Raises `ConfigError` for an unknown suite or env (with close matches) and for a suite
    whose extra is not installed (naming the pip command).
    """
    suite_name, env = split_env_name(name)
    suite = SUITES.get(suite_name)
    if suite is None:
        raise ConfigError(
            f"unknown environment suite {suite_name!r} in {name!r} (known: {', '.join(SUITES)})"
        )
    if not suite.installed():
        raise ConfigError(
            f"{name!r} needs the {suite.name} suite, which is not installed: "
            f"{suite.install_command()}"
        )
    names = suite.env_names()
    if env not in names:
        close = difflib.get_close_matches(env, names, n=3, cutoff=0.5)
        prefix = "" if ":" not in name else f"{suite.name}:"
        hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
        where = "`purejaxppo envs` lists them"
        if len(names) <= 30:
            where = f"known {suite.name} envs: {', '.join(names)}; {where}"
        if not prefix:
            where += "; other suites: " + ", ".join(f"{s}:NAME" for s in SUITES if s != "gymnax")
        raise ConfigError(f"unknown environment {name!r}{hint} ({where})")
    return suite.build(env)


def check_traces(env: FunctionalEnv, action: jax.Array) -> None:
    """Trace one reset and one step of `env` with `action` (nothing is compiled or run).

    A suite's own code that does not work with the installed jax fails here, as a one-line
    `ConfigError`, instead of in the middle of compiling a trainer.
    """

    def reset_and_step(key: jax.Array) -> Any:
        _, state = env.reset(key)
        return env.step(key, state, action)

    try:
        jax.eval_shape(reset_and_step, jax.random.key(0))
    except Exception as error:  # any failure inside the suite's code
        message = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(
            f"{env.name} does not run with jax {jax.__version__}: {type(error).__name__}: {message}"
        ) from error


# --- gymnax ------------------------------------------------------------------------------


def gymnax_env_names() -> list[str]:
    return list(gymnax.registered_envs)


def gymnax_env(name: str) -> tuple[Environment, Any]:
    """`gymnax.make(name)`; a failed download (MNISTBandit fetches MNIST) is a ConfigError."""
    try:
        return gymnax.make(name)
    except OSError as error:
        raise ConfigError(
            f"{name} downloads its data when it is built, and that failed: {error}"
        ) from None


# --- brax --------------------------------------------------------------------------------


def _brax_envs() -> Any:
    """`brax.envs`, imported without the lines mujoco prints when it probes for warp."""
    with contextlib.redirect_stdout(io.StringIO()):
        from brax import envs
    return envs


def brax_env_names() -> list[str]:
    return sorted(_brax_envs()._envs)  # brax has no public listing of its registry


def brax_env(
    name: str, episode_length: int | None = BRAX_EPISODE_LENGTH, **kwargs: Any
) -> FunctionalEnv:
    """Brax env `name` (`kwargs` go to `brax.envs.get_environment`, e.g. `backend=`).

    Brax's own `done` is the termination; the `episode_length` time limit truncates
    (brax's EpisodeWrapper would report it as `done` too). Observations float32
    `[observation_size]`; actions float32 `[action_size]` in [-1, 1], brax's convention
    (each env scales them to its actuators).
    """
    env = _brax_envs().get_environment(name, **kwargs)
    # Traced, not `env.observation_size`, which runs a reset op by op (seconds of compiles).
    obs = jax.eval_shape(env.reset, jax.random.key(0)).obs
    if not isinstance(obs, jax.ShapeDtypeStruct):
        raise ConfigError(f"brax:{name} has structured observations, which are not supported")

    def reset(key: jax.Array) -> tuple[jax.Array, Any]:
        state = env.reset(key)
        return state.obs, state

    def step(key: jax.Array, state: Any, action: jax.Array) -> tuple[Any, ...]:
        state = env.step(state, action)
        return state.obs, state, state.reward, state.done > 0

    obs_space = spaces.Box(-jnp.inf, jnp.inf, obs.shape, jnp.float32)
    action_space = spaces.Box(-1.0, 1.0, (env.action_size,), jnp.float32)
    adapted = FunctionalEnv(f"brax:{name}", reset, step, obs_space, action_space, episode_length)
    check_traces(adapted, jnp.zeros((env.action_size,), jnp.float32))
    return adapted


def _brax_default(name: str) -> tuple[Environment, Any]:
    env = brax_env(name)
    return env, env.default_params


# --- XLand-MiniGrid ----------------------------------------------------------------------


def xminigrid_env_names() -> list[str]:
    import xminigrid

    return list(xminigrid.registered_environments())


def xminigrid_env(name: str, **kwargs: Any) -> FunctionalEnv:
    """XLand-MiniGrid env `name` (`kwargs` go to `xminigrid.make`, e.g. `view_size=`).

    Observations uint8 `[view, view, 2]` (tile and colour ids of the agent's view),
    float32 for the network; 6 discrete actions. Reaching the goal terminates; the env's
    `max_steps` is the time limit (truncation), the same step at which XLand-MiniGrid
    reports its own. `XLand-*` envs are meaningful only with a ruleset from a benchmark:
    `env, params = xminigrid.make(name)`, `params = params.replace(ruleset=...)`, then
    `xminigrid_from_params(name, env, params)`.
    """
    import xminigrid

    env, params = xminigrid.make(name, **kwargs)
    return xminigrid_from_params(name, env, params)


def xminigrid_from_params(name: str, env: Any, params: Any) -> FunctionalEnv:
    """Wrap an XLand-MiniGrid `env` with its `params` (e.g. a benchmark's ruleset)."""

    def reset(key: jax.Array) -> tuple[jax.Array, Any]:
        timestep = env.reset(params, key)
        return timestep.observation, timestep

    def step(key: jax.Array, timestep: Any, action: jax.Array) -> tuple[Any, ...]:
        timestep = env.step(params, timestep, action)
        terminated = timestep.discount == 0  # discount is 0 only at a true end
        return timestep.observation, timestep, timestep.reward, terminated

    shape = tuple(int(d) for d in env.observation_shape(params))
    obs_space = spaces.Box(0, np.iinfo(np.uint8).max, shape, jnp.uint8)
    action_space = spaces.Discrete(int(env.num_actions(params)))

    def draw(timestep: Any) -> np.ndarray:
        return np.asarray(env.render(params, timestep), np.uint8)

    adapted = FunctionalEnv(
        f"xminigrid:{name}", reset, step, obs_space, action_space, int(params.max_steps), draw
    )
    check_traces(adapted, jnp.zeros((), jnp.int32))
    return adapted


def _xminigrid_default(name: str) -> tuple[Environment, Any]:
    env = xminigrid_env(name)
    return env, env.default_params


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("gymnax", "gymnax", None, gymnax_env_names, gymnax_env),
        Suite("brax", "brax", "brax", brax_env_names, _brax_default),
        Suite("xminigrid", "xminigrid", "xminigrid", xminigrid_env_names, _xminigrid_default),
    )
}
