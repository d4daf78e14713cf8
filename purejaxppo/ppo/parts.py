"""The static parts of a run, the one type every PPO stage takes. It sits below the stages
(it imports none of them), so the stages and the trainer built on them import it without a
cycle; `purejaxppo.ppo.trainer.Trainer` adds the entry points (`train(key, hp)`, ...)."""

from __future__ import annotations

import dataclasses

from purejaxppo.config import PPOConfig
from purejaxppo.envs.setup import EnvSetup
from purejaxppo.ppo.networks import Network
from purejaxppo.ppo.tuning import Tuning


@dataclasses.dataclass(frozen=True, eq=False)
class TrainerParts:
    """Config, env, network and backend tuning: what the stages read, never change. Hashed
    by identity, so it can be a static argument of the programs compiled for it."""

    config: PPOConfig
    env: EnvSetup
    network: Network
    tuning: Tuning
