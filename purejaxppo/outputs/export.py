"""A trained policy as a file that code without purejaxppo can run: `jax.export` or ONNX.

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

`format="onnx"` (`pip install 'purejaxppo[onnx]'`) writes the same function as `policy.onnx`
(jax2onnx), with inputs `obs` (and `first`, `rnn_state`) and outputs `action` (and
`rnn_state_out`). Before it is written, onnxruntime runs it on a batch of observations beside
the JAX policy: the largest action difference goes into the JSON, and a difference (any for
discrete actions, more than `ONNX_TOLERANCE` for continuous ones) is an `ExportMismatch`.

Observations are those the trainer sees (`EnvSetup.obs_shape`): for gymnax envs with array
observations, the env's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.errors import ConfigError
from purejaxppo.ppo.evaluate import select_action
from purejaxppo.ppo.trainer import Trainer
from purejaxppo.ppo.types import Policy

POLICY_FILE, META_FILE, ONNX_FILE = "policy.jax", "policy.json", "policy.onnx"
FORMATS = ("jax", "onnx")
ONNX_TOLERANCE = 1e-5
"""Largest difference allowed between the ONNX model's continuous actions (or GRU carry) and
the JAX policy's."""
CHECK_BATCH = 64
"""Observations the ONNX model is checked on before it is written."""


class ExportMismatch(RuntimeError):
    """The converted model's actions differ from the JAX policy's: nothing was written."""


def deterministic_policy(trainer: Trainer, policy: Policy) -> Callable[..., Any]:
    """One run's deterministic policy as a pure function of a batch (see the module doc)."""
    setup, key = trainer.env, jax.random.key(0)  # the mode needs no randomness

    def act(obs: jax.Array, first: jax.Array, rnn_state: jax.Array | None) -> tuple:
        rnn_state, action = select_action(trainer, policy, rnn_state, obs, first, key, True)
        if setup.discrete:
            return action.astype(jnp.int32), rnn_state
        bounded = jnp.clip(action, setup.action_low, setup.action_high)
        return bounded.astype(jnp.float32), rnn_state

    if trainer.network.rnn_size:
        return act

    def feed_forward(obs: jax.Array) -> jax.Array:
        return act(obs, jnp.zeros(obs.shape[:1], bool), None)[0]

    return feed_forward


def policy_arguments(trainer: Trainer) -> list[jax.ShapeDtypeStruct]:
    """The exported function's arguments, with a symbolic batch size B."""
    (batch,) = jax.export.symbolic_shape("B")
    obs = jax.ShapeDtypeStruct((batch, *trainer.env.obs_shape), jnp.float32)
    rnn_size = trainer.network.rnn_size
    if not rnn_size:
        return [obs]
    first = jax.ShapeDtypeStruct((batch,), jnp.bool_)
    return [obs, first, jax.ShapeDtypeStruct((batch, rnn_size), jnp.float32)]


def export_policy(
    trainer: Trainer,
    policy: Policy,
    out: Path,
    document: dict[str, Any] | None = None,
    format: str = "jax",
) -> Path:
    """Write the deterministic policy of one run (`policy` leaves without a run axis) to
    `out/policy.jax` (`format="jax"`) or `out/policy.onnx` (`"onnx"`), with `out/policy.json`
    beside it; returns `out`."""
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    fn = deterministic_policy(trainer, policy)
    if format == "onnx":
        model, checked = onnx_model(trainer, fn)  # converted and checked before any write
        out.mkdir(parents=True, exist_ok=True)
        (out / ONNX_FILE).write_bytes(model.SerializeToString())
    else:
        out.mkdir(parents=True, exist_ok=True)
        exported = jax.export.export(jax.jit(fn))(*policy_arguments(trainer))
        (out / POLICY_FILE).write_bytes(exported.serialize())
        checked = {}
    setup = trainer.env
    meta = {
        "format": "onnx" if format == "onnx" else "jax.export",
        "env": setup.name,
        "observation": {"shape": list(setup.obs_shape), "dtype": "float32"},
        "action": action_space(trainer),
        "recurrent": bool(trainer.network.rnn_size),
        "rnn_size": int(trainer.network.rnn_size or 0),
        "signature": signature_text(trainer),
        **checked,
        "run": document or {},
    }
    from purejaxppo.outputs.machine import library_versions
    from purejaxppo.outputs.summary import write_json

    write_json(out / META_FILE, meta | {"versions": library_versions()})
    return out


def onnx_model(trainer: Trainer, fn: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
    """`fn` converted to ONNX and checked against itself on `CHECK_BATCH` observations:
    the model and `{"onnx_check": {...}}` for the JSON; `ExportMismatch` if they differ."""
    jax2onnx, onnxruntime = onnx_modules()
    recurrent = bool(trainer.network.rnn_size)
    inputs = ["obs", "first", "rnn_state"] if recurrent else ["obs"]
    outputs = ["action", "rnn_state_out"] if recurrent else ["action"]
    model = jax2onnx.to_onnx(
        fn,
        policy_arguments(trainer),
        model_name="purejaxppo_policy",
        input_names=inputs,
        output_names=outputs,
    )
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds = check_inputs(trainer)
    got = session.run(None, dict(zip(inputs, feeds, strict=True)))
    want = fn(*feeds) if recurrent else (fn(*feeds),)
    differences = [float(np.max(np.abs(g - np.asarray(w)))) for g, w in zip(got, want, strict=True)]
    action_difference = differences[0]
    allowed = 0.0 if trainer.env.discrete else ONNX_TOLERANCE
    if action_difference > allowed or max(differences) > ONNX_TOLERANCE:
        raise ExportMismatch(
            f"the ONNX model's actions differ from the JAX policy's on {CHECK_BATCH} "
            f"observations: max difference {max(differences):.3g} (allowed {allowed:g}); "
            "nothing was written"
        )
    check = {"observations": CHECK_BATCH, "max_action_difference": action_difference}
    if recurrent:
        check["max_rnn_state_difference"] = differences[1]
    return model, {"onnx_check": check}


def check_inputs(trainer: Trainer) -> list[np.ndarray]:
    """A fixed batch of wide random observations (and episode starts and GRU carries)."""
    rng = np.random.default_rng(0)
    shape = (CHECK_BATCH, *trainer.env.obs_shape)
    obs = (3.0 * rng.normal(size=shape)).astype(np.float32)
    if not trainer.network.rnn_size:
        return [obs]
    first = rng.random(CHECK_BATCH) < 0.5
    carry = rng.normal(size=(CHECK_BATCH, trainer.network.rnn_size)).astype(np.float32)
    return [obs, first, carry]


def onnx_modules() -> tuple[Any, Any]:
    """jax2onnx and onnxruntime, or a `ConfigError` with the install line."""
    try:
        import jax2onnx
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "format onnx needs jax2onnx and onnxruntime: pip install 'purejaxppo[onnx]'"
        ) from None
    # Plugins for libraries this project does not use fail to load on newer jax; quiet them.
    logging.getLogger("jax2onnx").setLevel(logging.ERROR)
    return jax2onnx, onnxruntime


def action_space(trainer: Trainer) -> dict[str, Any]:
    setup = trainer.env
    if setup.discrete:
        return {"kind": "discrete", "n": setup.action_dim, "dtype": "int32"}
    low, high = (np.asarray(b, np.float32).tolist() for b in (setup.action_low, setup.action_high))
    return {"kind": "box", "shape": [setup.action_dim], "low": low, "high": high}


def signature_text(trainer: Trainer) -> str:
    obs = f"obs f32[B, {', '.join(map(str, trainer.env.obs_shape))}]"
    action = "action i32[B]" if trainer.env.discrete else f"action f32[B, {trainer.env.action_dim}]"
    size = trainer.network.rnn_size
    if not size:
        return f"{obs} -> {action}"
    return f"({obs}, first bool[B], rnn_state f32[B, {size}]) -> ({action}, rnn_state)"


def load_policy(path: Path) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The exported policy in directory `path` as a callable and its JSON description: a
    `jax.export` file runs with jax alone, an ONNX file with onnxruntime (numpy in, numpy
    out, a tuple for recurrent policies)."""
    meta = json.loads((Path(path) / META_FILE).read_text())
    if meta["format"] == "onnx":
        _, onnxruntime = onnx_modules()
        session = onnxruntime.InferenceSession(
            str(Path(path) / ONNX_FILE), providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in session.get_inputs()]

        def run_onnx(*args: Any) -> Any:
            outputs = session.run(
                None, {n: np.asarray(a) for n, a in zip(names, args, strict=True)}
            )
            return tuple(outputs) if meta["recurrent"] else outputs[0]

        return run_onnx, meta
    exported = jax.export.deserialize(bytearray((Path(path) / POLICY_FILE).read_bytes()))
    return exported.call, meta
