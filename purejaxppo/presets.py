"""Named starting points: a static config and hyperparameters for each."""

from __future__ import annotations

from purejaxppo.config import Hyperparams, PPOConfig

PRESETS: dict[str, tuple[PPOConfig, Hyperparams]] = {
    # The widely used CartPole configuration (DESIGN.md section 4); reaches about 500.
    "cartpole": (
        PPOConfig(env="CartPole-v1", num_envs=4, num_steps=128, total_timesteps=500_000),
        Hyperparams(),
    ),
    "acrobot": (
        PPOConfig(env="Acrobot-v1", num_envs=16, num_steps=128, total_timesteps=500_000),
        Hyperparams(learning_rate=5e-4),
    ),
    # Measured on the 2-core CPU: 4 seeds end at about -165 (random policy: about -1200).
    # Rewards scaled by 0.1 keep value targets O(10); larger minibatches keep it fast on CPU.
    "pendulum": (
        PPOConfig(
            env="Pendulum-v1",
            num_envs=16,
            num_steps=128,
            total_timesteps=500_000,
            update_epochs=10,
            num_minibatches=8,
        ),
        Hyperparams(learning_rate=1e-3, gamma=0.95, ent_coef=0.0, reward_scale=0.1),
    ),
    "breakout-minatar": (
        PPOConfig(
            env="Breakout-MinAtar",
            num_envs=64,
            num_steps=128,
            total_timesteps=10_000_000,
            update_epochs=4,
            num_minibatches=8,
            hidden_sizes=(64,),
            activation="relu",
            network="cnn",
        ),
        Hyperparams(learning_rate=5e-4, ent_coef=0.01),
    ),
}
