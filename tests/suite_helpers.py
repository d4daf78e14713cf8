"""Helpers for the environment-suite tests (a tiny training run) and for every test that
compiles a program only to run it: `jit_fast` compiles it cheaply."""

import signal
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from purejaxppo import Hyperparams, PPOConfig
from purejaxppo.ppo.trainer import Trainer

# Tests that compile a program only to run it pay mostly for the compile: on the CPU, turn
# XLA's backend optimisations off (half the compile time or less; results differ by float
# rounding, so the tightest comparisons use FAITHFUL_CPU_COMPILE below and the learning runs
# that rounding moves, the GRU's, keep jax.jit's defaults).
FAST_CPU_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
# LLVM's optimisations off only: XLA's buffer plan and fused kernels stay the default compile's
# (the same memory analysis; results to the tightest tolerances), in about half its time.
FAITHFUL_CPU_COMPILE = {
    name: value for name, value in FAST_CPU_COMPILE.items() if name != "xla_cpu_use_fusion_emitters"
}


def tiny_config(env: str) -> PPOConfig:
    """One update of 2 envs x 8 steps, one epoch of one minibatch, one hidden layer of 8."""
    return PPOConfig(
        env=env,
        num_envs=2,
        num_steps=8,
        total_timesteps=16,
        num_minibatches=1,
        update_epochs=1,
        hidden_sizes=(8,),
    )


def jit_fast(
    fn: Callable[..., Any], cpu_options: dict[str, Any] = FAST_CPU_COMPILE, **jit_options: Any
) -> Callable[..., Any]:
    """`jax.jit(fn, **jit_options)`, compiled with `cpu_options` (default: without backend
    optimisations) on the CPU."""
    options = cpu_options if jax.default_backend() == "cpu" else None
    return jax.jit(fn, compiler_options=options, **jit_options)


def train_once(trainers: Sequence[Trainer]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train every trainer (one compiled program for all); per trainer its total loss
    `[num_updates]` and final observations `[num_envs, *obs_shape]`."""
    key, hp = jax.random.key(0), Hyperparams()

    def run(key: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        outs = [trainer(key, hp) for trainer in trainers]
        return [(out.metrics.total_loss, out.state.runner.obs) for out in outs]

    results = jit_fast(run)(key)
    return [(np.asarray(loss), np.asarray(obs)) for loss, obs in results]


def assert_trained(trainer: Trainer, loss: np.ndarray, obs: np.ndarray) -> None:
    """Finite losses for every update, and float32 observations of the setup's shape."""
    config, setup = trainer.config, trainer.env
    assert loss.shape == (config.num_updates,), (setup.name, loss.shape)
    assert np.all(np.isfinite(loss)), (setup.name, loss)
    assert obs.shape == (config.num_envs, *setup.obs_shape), (setup.name, obs.shape)
    assert obs.dtype == np.float32, (setup.name, obs.dtype)


def forbid_compiling(monkeypatch: Any) -> None:
    """Make compiling a training chunk fail the test: input checks must come first."""
    import purejaxppo.runs.chunked

    def no_compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled before the input was checked")

    monkeypatch.setattr(purejaxppo.runs.chunked, "compile_chunked", no_compile)


class StopAfterChunks:
    """Stands in for `runs.stop.StopOnSignals`: a SIGTERM that arrives after `chunks`
    chunks."""

    chunks = 0

    def __init__(self, graceful: bool = True):
        self.signal_number, self.polls = None, 0

    def requested(self) -> int:
        self.polls += 1
        if self.polls > self.chunks:
            self.signal_number = signal.SIGTERM
        return self.signal_number or 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def stop_after(monkeypatch, chunks: int) -> None:
    import importlib

    # `purejaxppo.cli.main` the attribute is the function; the module is patched here.
    cli_main = importlib.import_module("purejaxppo.cli.main")
    monkeypatch.setattr(StopAfterChunks, "chunks", chunks)
    monkeypatch.setattr(cli_main, "StopOnSignals", StopAfterChunks)
