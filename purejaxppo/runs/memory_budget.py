"""A model of the trainer's memory, and a clear error instead of an out-of-memory crash.

Per run, the learner's working set scales with the env steps of one update
(`num_steps x num_envs`). Per env step it holds, in float32:

- the rollout: observation and pre-reset observation, action, log-prob, value, next value,
  reward, flags and episode statistics, then the flattened batch with advantages, targets
  and its shuffled copy, and the sampling noise drawn before the rollout (A floats for A
  actions or action dimensions): about `4 * obs + 3 * act + A + 16` floats;
- activations: about 0.75 floats per hidden unit of the two towers together (1.5 per unit
  of `hidden_sizes`), and as much again per unit of a conv feature map. This term is
  calibrated against XLA's own analysis of the compiled program
  (`compiled.memory_analysis()`): XLA keeps full-batch activations (the bootstrap values of
  the pre-reset observations, the forward pass of each epoch), so it hardly depends on
  `num_minibatches`.

- recurrent: about 7 floats per GRU unit (the memory after every step, kept for the
  bootstrap values, and the gates of the replayed sequences with their gradients), against
  XLA's 6.5-7.4 for GRU widths 128 and 256.

So `bytes ~= 4 * runs * num_envs * num_steps * (4 * obs + 3 * act + A + 16 + 1.5 *
sum(hidden_sizes) + 7 * gru)`.
CartPole (obs 4, 2 actions, 2x64 hidden): ~920 bytes per env step per run; XLA reports 570-830
depending on sizes. The model errs high: tests/test_memory.py keeps it between 0.67x and 2x
of XLA's figure over several envs and sizes. Parameters and optimizer state are small beside it;
the metrics of every update, which the host keeps, are checked apart (`check_metrics_fit`).
"""

from __future__ import annotations

import math
import os

import jax

from purejaxppo.config import ConfigError, PPOConfig
from purejaxppo.envs.spec import EnvSpec
from purejaxppo.ppo.types import Metrics

FLOAT_BYTES = 4
HEADROOM = 0.8  # use at most this share of what the device has free


def bytes_per_env_step(config: PPOConfig, spec: EnvSpec) -> float:
    obs = math.prod(spec.obs_shape)
    act = 1 if spec.discrete else spec.action_dim
    noise = spec.action_dim  # the rollout's sampling noise, drawn before its scan
    units = 2 * sum(config.hidden_sizes)  # actor and critic towers
    if config.network == "cnn":
        units += 2 * 16 * math.prod(spec.obs_shape[:-1])  # 16-channel feature map per tower
    memory = 7 * config.gru_size if config.recurrent else 0  # GRU states, gates, gradients
    return FLOAT_BYTES * (4 * obs + 3 * act + noise + 16 + 0.75 * units + memory)


def estimate_bytes(config: PPOConfig, spec: EnvSpec, num_runs: int) -> int:
    """Modelled peak working set of `num_runs` runs trained in one call."""
    return int(num_runs * config.batch_size * bytes_per_env_step(config, spec))


def available_bytes() -> int:
    """Free memory of the first device: the accelerator's limit less what is in use, or the
    host's available memory (MemAvailable) on CPU."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return host_available_bytes()


def host_available_bytes() -> int:
    """The host's available memory (MemAvailable, else the free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_fits(config: PPOConfig, spec: EnvSpec, num_runs: int, free: int | None = None) -> None:
    """Raise `ConfigError` before compiling if the population cannot fit in memory."""
    need = estimate_bytes(config, spec, num_runs)
    free = available_bytes() if free is None else free
    if need > HEADROOM * free:
        per_run = estimate_bytes(config, spec, 1)
        fit = int(HEADROOM * free // max(per_run, 1))
        raise ConfigError(
            f"{num_runs} run(s) x {config.num_envs} envs x {config.num_steps} steps need about "
            f"{need / 2**30:.1f} GiB, but {free / 2**30:.1f} GiB is free on "
            f"{jax.devices()[0].platform}; at most {fit} run(s) fit: use fewer runs or envs"
        )


def metrics_bytes(config: PPOConfig, num_runs: int) -> int:
    """Host memory of a whole run's metrics: `[R, num_updates]` per metric, 4 bytes each."""
    return FLOAT_BYTES * num_runs * config.num_updates * len(Metrics._fields)


def check_metrics_fit(config: PPOConfig, num_runs: int, free: int | None = None) -> None:
    """Raise `ConfigError` before compiling if the metrics of every update, which the host
    keeps for checkpoints and the summary, cannot fit in its memory."""
    need = metrics_bytes(config, num_runs)
    free = host_available_bytes() if free is None else free
    if need > HEADROOM * free:
        raise ConfigError(
            f"the metrics of {num_runs} run(s) x {config.num_updates:,} updates need about "
            f"{need / 2**30:.1f} GiB of host memory, but {free / 2**30:.1f} GiB is available: "
            "use fewer env steps (--total-timesteps) or runs"
        )


def check_compiled_fits(compiled, free: int | None = None) -> None:
    """After compiling: refuse to run a program whose XLA temp buffers exceed free memory."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return
    need = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    free = available_bytes() if free is None else free
    if need > HEADROOM * free:
        raise ConfigError(
            f"the compiled program needs {need / 2**30:.1f} GiB of working memory, "
            f"{free / 2**30:.1f} GiB is free: use fewer runs or envs"
        )
