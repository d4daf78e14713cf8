"""A trained policy as a file that code without purejaxppo can run: `jax.export`.

`export_policy` serializes the deterministic policy of one run, batch-polymorphic, with the
frozen observation normalisation inside:

- feed-forward: `obs f32[B, *obs_shape] -> action`, int32 `[B]` (discrete) or float32
  `[B, D]` clipped to the action bounds (continuous);
- recurrent: `(obs [B, *obs_shape], first bool[B], rnn_state f32[B, H]) -> (action,
  rnn_state)`; start from zeros of `[B, H]` (`rnn_size` in the JSON) and set `first` at the
  first step of every episode.

Beside `policy.jax` it writes `policy.json`: the env, its observation and action spaces, the
run's document (config, hyperparameters, seed), the updates done and the library versions.
`jax.export.deserialize(open("policy.jax", "rb").read()).call(obs)` runs it with jax alone;
`load_policy` does so and reads the JSON.

Observations are those the trainer sees (`EnvSpec.obs_shape`): for gymnax envs with array
observations, the env's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.ppo.evaluate import select_action
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import Policy

POLICY_FILE, META_FILE = "policy.jax", "policy.json"


def deterministic_policy(trainer: Trainer, policy: Policy) -> Callable[..., Any]:
    """One run's deterministic policy as a pure function of a batch (see the module doc)."""
    spec, key = trainer.spec, jax.random.key(0)  # the mode needs no randomness

    def act(obs: jax.Array, first: jax.Array, rnn_state: jax.Array | None) -> tuple:
        rnn_state, action = select_action(trainer, policy, rnn_state, obs, first, key, True)
        if spec.discrete:
            return action.astype(jnp.int32), rnn_state
        bounded = jnp.clip(action, spec.action_low, spec.action_high)
        return bounded.astype(jnp.float32), rnn_state

    if trainer.network.rnn_size:
        return act

    def feed_forward(obs: jax.Array) -> jax.Array:
        return act(obs, jnp.zeros(obs.shape[:1], bool), None)[0]

    return feed_forward


def policy_arguments(trainer: Trainer) -> list[jax.ShapeDtypeStruct]:
    """The exported function's arguments, with a symbolic batch size B."""
    (batch,) = jax.export.symbolic_shape("B")
    obs = jax.ShapeDtypeStruct((batch, *trainer.spec.obs_shape), jnp.float32)
    rnn_size = trainer.network.rnn_size
    if not rnn_size:
        return [obs]
    first = jax.ShapeDtypeStruct((batch,), jnp.bool_)
    return [obs, first, jax.ShapeDtypeStruct((batch, rnn_size), jnp.float32)]


def export_policy(
    trainer: Trainer, policy: Policy, out: Path, document: dict[str, Any] | None = None
) -> Path:
    """Write `out/policy.jax` (the serialized deterministic policy of one run: `policy`
    leaves without a run axis) and `out/policy.json`; returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    fn = deterministic_policy(trainer, policy)
    exported = jax.export.export(jax.jit(fn))(*policy_arguments(trainer))
    (out / POLICY_FILE).write_bytes(exported.serialize())
    spec = trainer.spec
    meta = {
        "format": "jax.export",
        "env": spec.name,
        "observation": {"shape": list(spec.obs_shape), "dtype": "float32"},
        "action": action_space(trainer),
        "recurrent": bool(trainer.network.rnn_size),
        "rnn_size": int(trainer.network.rnn_size or 0),
        "signature": signature_text(trainer),
        "run": document or {},
    }
    from purejaxppo.outputs.summary import library_versions, write_json

    write_json(out / META_FILE, meta | {"versions": library_versions()})
    return out


def action_space(trainer: Trainer) -> dict[str, Any]:
    spec = trainer.spec
    if spec.discrete:
        return {"kind": "discrete", "n": spec.action_dim, "dtype": "int32"}
    low, high = (np.asarray(b, np.float32).tolist() for b in (spec.action_low, spec.action_high))
    return {"kind": "box", "shape": [spec.action_dim], "low": low, "high": high}


def signature_text(trainer: Trainer) -> str:
    obs = f"obs f32[B, {', '.join(map(str, trainer.spec.obs_shape))}]"
    action = (
        "action i32[B]" if trainer.spec.discrete else f"action f32[B, {trainer.spec.action_dim}]"
    )
    size = trainer.network.rnn_size
    if not size:
        return f"{obs} -> {action}"
    return f"({obs}, first bool[B], rnn_state f32[B, {size}]) -> ({action}, rnn_state)"


def load_policy(path: Path) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The exported policy in directory `path` as a callable (jax alone runs it) and its
    JSON description."""
    exported = jax.export.deserialize(bytearray((Path(path) / POLICY_FILE).read_bytes()))
    meta = json.loads((Path(path) / META_FILE).read_text())
    return exported.call, meta
