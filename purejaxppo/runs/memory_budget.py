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

Each run also holds its network's P parameters several times over. An update needs 5 floats
per parameter (`UPDATE_COPIES`); the initialisation before it needs more, 16
(`INIT_COPIES`), for the orthogonal kernels' random bits, normal draws and QR
factorisations: XLA's analysis of wide networks (2x4096, 3x2048 on the CPU) gives 5 for a
chunk of updates, 13-18 for the initialisation. Small for the usual widths (CartPole's 2x64
towers: 9k parameters, under 1 MiB a run), it is what a wide network runs out of:
`hidden_sizes=30000,30000` is 1.8e9 parameters, over 100 GiB to initialise. P is counted
from the shapes of the network's initialisation, without allocating it.

So `bytes ~= runs * max(4 * num_envs * num_steps * (4 * obs + 3 * act + A + 16 + 1.5 *
sum(hidden_sizes) + 7 * gru) + 20 * P, 64 * P)`.
CartPole (obs 4, 2 actions, 2x64 hidden): ~920 bytes per env step per run; XLA reports 570-830
depending on sizes. The model errs high: tests/runs/test_memory_budget.py keeps it between
0.67x and 2x of XLA's figure over several envs and sizes. The metrics of every update, which
the host keeps, are checked apart (`check_metrics_fit`).

Evaluation (`check_evaluation_fits`) plays E episodes per run in a `lax.while_loop`, so
nothing grows with the steps: per episode it holds the env runner (env state, observation,
return and length), the policy's input and the actor's activations, about `runner + obs +
sum(hidden_sizes) + 2 * conv map + 7 * gru + 11` floats, which matches XLA's analysis of
the evaluation program within a few percent (CartPole 2x64: 145 floats an episode, 151
modelled).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp

from purejaxppo.config import ConfigError, PPOConfig
from purejaxppo.envs.setup import EnvSetup
from purejaxppo.ppo.types import Metrics
from purejaxppo.runs.placement import Placement

FLOAT_BYTES = 4
HEADROOM = 0.8  # use at most this share of what the device has free
UPDATE_COPIES = 5
"""Floats per network parameter during an update: the parameters and Adam's two moments
(updated in place), the gradient and its flattened copy."""
INIT_COPIES = 16
"""Floats per network parameter at the peak of a run's initialisation: the parameters and
Adam's two moments it makes, and the orthogonal kernels' random bits, normal draws and QR
factorisations."""


def bytes_per_env_step(config: PPOConfig, setup: EnvSetup) -> float:
    obs = math.prod(setup.obs_shape)
    act = 1 if setup.discrete else setup.action_dim
    noise = setup.action_dim  # the rollout's sampling noise, drawn before its scan
    units = 2 * sum(config.hidden_sizes)  # actor and critic towers
    if config.network == "cnn":
        units += 2 * 16 * math.prod(setup.obs_shape[:-1])  # 16-channel feature map per tower
    memory = 7 * config.gru_size if config.recurrent else 0  # GRU states, gates, gradients
    return FLOAT_BYTES * (4 * obs + 3 * act + noise + 16 + 0.75 * units + memory)


def conv_map_units(config: PPOConfig, setup: EnvSetup) -> int:
    """Units of one tower's 16-channel convolution feature map (0 without the CNN torso)."""
    return 16 * math.prod(setup.obs_shape[:-1]) if config.network == "cnn" else 0


def parameter_count(config: PPOConfig, setup: EnvSetup) -> int:
    """P, the floats of one run's network parameters: the leaves of its initialisation as
    shapes (`jax.eval_shape`), so a network too wide to allocate is counted at once."""
    from purejaxppo.ppo.networks import make_network, param_shapes
    from purejaxppo.ppo.tuning import Tuning

    network = make_network(config, setup, Tuning.plain())  # kernel choices change no shape
    shapes = param_shapes(network, jax.ShapeDtypeStruct((1, *setup.obs_shape), jnp.float32))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def init_bytes(config: PPOConfig, setup: EnvSetup) -> int:
    """The peak of one run's initialisation, its network's (`INIT_COPIES`)."""
    return INIT_COPIES * FLOAT_BYTES * parameter_count(config, setup)


def update_bytes(config: PPOConfig, setup: EnvSetup) -> int:
    """The peak of one run's update: its env steps' and its network's (`UPDATE_COPIES`)."""
    steps = config.batch_size * bytes_per_env_step(config, setup)
    return int(steps + UPDATE_COPIES * FLOAT_BYTES * parameter_count(config, setup))


def estimate_bytes(config: PPOConfig, setup: EnvSetup, num_runs: int) -> int:
    """Modelled peak working set of `num_runs` runs trained in one call: the larger of the
    initialisation's and an update's."""
    return num_runs * max(init_bytes(config, setup), update_bytes(config, setup))


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


def check_fits(config: PPOConfig, setup: EnvSetup, num_runs: int, free: int | None = None) -> None:
    """Raise `ConfigError` before compiling if the population cannot fit in memory, saying
    what to reduce: `hidden_sizes` where the network's parameters and optimizer state are
    most of a run's memory (one run's alone may not fit), else the runs or the envs."""
    need = estimate_bytes(config, setup, num_runs)
    free = available_bytes() if free is None else free
    if need <= HEADROOM * free:
        return
    where = f"{free / 2**30:.1f} GiB is free on {jax.devices()[0].platform}"
    init = init_bytes(config, setup)
    if init > HEADROOM * free:
        raise ConfigError(
            f"hidden_sizes = {config.hidden_sizes}: one run's network of "
            f"{parameter_count(config, setup):,} parameters needs about {init / 2**30:.1f} GiB "
            f"to initialise and train, but {where}: use smaller hidden_sizes"
        )
    per_run = estimate_bytes(config, setup, 1)
    fit = int(HEADROOM * free // max(per_run, 1))
    network = init >= update_bytes(config, setup)  # the network, not the env steps, is the peak
    advice = "smaller hidden_sizes or fewer runs" if network else "fewer runs or envs"
    raise ConfigError(
        f"{num_runs} run(s) x {config.num_envs} envs x {config.num_steps} steps need about "
        f"{need / 2**30:.1f} GiB, but {where}; at most {fit} run(s) fit: use {advice}"
    )


def runner_floats(setup: EnvSetup) -> int:
    """Floats (and ints) of one env's runner: env state, observation, return and length,
    from the shapes of a reset (`jax.eval_shape`: nothing runs)."""
    from purejaxppo.envs.setup import reset_envs

    shapes = jax.eval_shape(lambda key: reset_envs(setup, key, 1), jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def bytes_per_episode(config: PPOConfig, setup: EnvSetup) -> float:
    """Evaluation memory of one episode (one env played to its end), as modelled above."""
    obs = math.prod(setup.obs_shape)
    memory = 7 * config.gru_size if config.recurrent else 0
    units = sum(config.hidden_sizes) + 2 * conv_map_units(config, setup)
    return FLOAT_BYTES * (runner_floats(setup) + obs + units + memory + 11)


def evaluation_bytes(config: PPOConfig, setup: EnvSetup, num_runs: int, episodes: int) -> int:
    """Modelled working set of evaluating `num_runs` policies on `episodes` episodes each."""
    per_run = FLOAT_BYTES * parameter_count(config, setup)
    return int(num_runs * (per_run + episodes * bytes_per_episode(config, setup)))


def check_evaluation_fits(
    config: PPOConfig,
    setup: EnvSetup,
    num_runs: int,
    episodes: int,
    name: str = "episodes",
    free: int | None = None,
) -> None:
    """Raise `ConfigError` before compiling if `episodes` per run (the field or flag `name`)
    of `num_runs` runs cannot be evaluated in memory, with the most episodes that fit."""
    need = evaluation_bytes(config, setup, num_runs, episodes)
    free = available_bytes() if free is None else free
    if need <= HEADROOM * free:
        return
    room = HEADROOM * free / num_runs - FLOAT_BYTES * parameter_count(config, setup)
    fit = max(0, int(room // bytes_per_episode(config, setup)))
    advice = (
        f"at most {fit} episodes per run fit: lower it to {fit}"
        if fit
        else "not even one episode per run fits"
    )
    given = f"{name} {episodes}" if name.startswith("-") else f"{name} = {episodes}"
    raise ConfigError(
        f"{given}: evaluating {num_runs} run(s) x {episodes:,} episodes needs "
        f"about {need / 2**30:.1f} GiB, but {free / 2**30:.1f} GiB is free on "
        f"{jax.devices()[0].platform}; {advice}"
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


def check_population_fits(
    config: PPOConfig, setup: EnvSetup, num_runs: int, placement: Placement, eval_episodes: int = 0
) -> None:
    """The population's training and metrics, and its periodic evaluation of `eval_episodes`
    per run (0: none), fit in memory on `placement`'s devices: arithmetic, so 10^8 runs are
    refused at once."""
    runs_per_device = placement.padded(num_runs) // placement.num_devices
    check_fits(config, setup, runs_per_device)
    check_metrics_fit(config, num_runs)
    if eval_episodes:
        check_evaluation_fits(config, setup, runs_per_device, eval_episodes, "eval_episodes")
