"""Shared test helpers. Tests mirror the package (`tests/ppo/` for `purejaxppo/ppo/`, ...);
the helper modules beside this file are importable from every test directory."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# The small chunked run's fixtures (trainer, population, uninterrupted, program2).
pytest_plugins = ["small_runs"]


from purejaxppo import PPOConfig  # noqa: E402 (after the path is set)


def probe_config(num_steps: int, num_updates: int) -> PPOConfig:
    """A small, fast config for probe-style tasks (the env is passed to make_train)."""
    return PPOConfig(
        env="probe",
        num_envs=16,
        num_steps=num_steps,
        total_timesteps=16 * num_steps * num_updates,
        update_epochs=4,
        num_minibatches=4,
        hidden_sizes=(32, 32),
    )
