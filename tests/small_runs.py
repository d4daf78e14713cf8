"""A small chunked run shared by the chunked-loop, checkpoint and session tests: its config,
session-scoped fixtures (`conftest.py` registers this module as a plugin, so every test can
name them) and a bit-identity check."""

import jax
import numpy as np
import pytest

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.runs.chunked import ResumePoint, compile_chunked, run_chunked
from purejaxppo.runs.population import build_population

CONFIG = PPOConfig(
    num_envs=4, num_steps=8, total_timesteps=4 * 8 * 7, update_epochs=2, num_minibatches=2
)


# Session-scoped, as every module only reads them (a worker builds them once); the private
# names keep `uninterrupted` and `program2` on this trainer where a module has its own `trainer`.
@pytest.fixture(scope="session")
def _small_trainer():
    return make_train(CONFIG)


@pytest.fixture(scope="session")
def _small_population():
    return build_population(Hyperparams(), seed=3, num_seeds=2, sweep={"clip_eps": [0.1, 0.3]})


@pytest.fixture(scope="session")
def trainer(_small_trainer):
    return _small_trainer


@pytest.fixture(scope="session")
def population(_small_population):
    return _small_population


@pytest.fixture(scope="session")
def uninterrupted(_small_trainer, _small_population):
    return run_in_chunks(_small_trainer, _small_population, CONFIG.num_updates)


def run_in_chunks(trainer, population, chunk_updates, resume=None, **options):
    """Compile and run `population` in chunks of `chunk_updates` (from `resume`, a
    `(state, metrics, updates_done)` tuple, when given), as the session does."""
    resume = None if resume is None else ResumePoint(*resume)
    done = 0 if resume is None else resume.updates_done
    program = compile_chunked(trainer, population, chunk_updates, done)
    return run_chunked(program, population, resume=resume, **options)


@pytest.fixture(scope="session")
def program2(_small_trainer, _small_population):
    """Chunks of 2 updates (and the last of 1), compiled once for the session."""
    return compile_chunked(_small_trainer, _small_population, 2)


def assert_bit_identical(a, b):
    a, b = (jax.tree.map(_key_data, t, is_leaf=_is_key) for t in (a, b))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_data(x):
    return jax.random.key_data(x) if _is_key(x) else x
