"""Exported policies: the jax.export file and the ONNX model give the library policy's
deterministic actions (discrete exactly, continuous with observation normalisation to 1e-5,
recurrent with its carry); a disagreeing ONNX model is an error. A trained policy played
without purejaxppo: tests/outputs/test_trained_policy.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.cli.main import main
from purejaxppo.outputs import export as export_module
from purejaxppo.outputs.export import ExportMismatch, export_policy, load_policy
from purejaxppo.ppo.evaluate import select_action
from purejaxppo.ppo.normalize import RunningStats
from purejaxppo.ppo.types import Policy

# On one xdist worker, so that the cache below serves both cases of each config.
pytestmark = pytest.mark.xdist_group("export")


@functools.cache  # the jax and onnx cases of a config share its trainer and initial params
def initial_params(config: PPOConfig) -> tuple:
    trainer = make_train(config)
    state = jax.jit(trainer.init)(jax.random.key(1), Hyperparams())
    return trainer, state.params


def initial_policy(config: PPOConfig, obs_stats=None) -> tuple:
    trainer, params = initial_params(config)
    return trainer, Policy(params, obs_stats)


def random_obs(trainer, batch=33, scale=2.0):
    rng = np.random.default_rng(0)
    return (scale * rng.normal(size=(batch, *trainer.env.obs_shape))).astype(np.float32)


def library_actions(trainer, policy, obs, first=None, rnn_state=None):
    first = jnp.zeros(obs.shape[:1], bool) if first is None else first
    return select_action(trainer, policy, rnn_state, obs, first, jax.random.key(0), True)


@pytest.mark.parametrize("format", ["jax", "onnx"])
def test_discrete_export_gives_the_library_actions_exactly(tmp_path, format):
    trainer, policy = initial_policy(PPOConfig())
    export_policy(trainer, policy, tmp_path, {"name": "cartpole"}, format=format)
    exported, meta = load_policy(tmp_path)
    for batch in (1, 33):  # batch-polymorphic
        obs = random_obs(trainer, batch)
        actions = np.asarray(exported(obs))
        assert actions.dtype == np.int32 and actions.shape == (batch,)
        np.testing.assert_array_equal(actions, library_actions(trainer, policy, obs)[1])
    assert len(set(np.asarray(exported(random_obs(trainer))).tolist())) == 2  # not constant
    assert meta["action"] == {"kind": "discrete", "n": 2, "dtype": "int32"}
    assert meta["format"] == {"jax": "jax.export", "onnx": "onnx"}[format]
    if format == "onnx":
        assert meta["onnx_check"] == {"observations": 64, "max_action_difference": 0.0}
    assert (
        meta["signature"] == "obs f32[B, 4] -> action i32[B]" and meta["run"]["name"] == "cartpole"
    )


@pytest.mark.parametrize("format", ["jax", "onnx"])
def test_continuous_export_normalises_and_clips(tmp_path, format):
    config = PPOConfig(env="Pendulum-v1", normalize_obs=True)
    stats = RunningStats(
        mean=jnp.asarray([0.5, -0.2, 1.0]),
        var=jnp.asarray([0.25, 4.0, 9.0]),
        count=jnp.asarray(10.0),
    )
    trainer, policy = initial_policy(config, stats)
    # The actor's last layer scaled up, so that some actions lie beyond the bounds [-2, 2].
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf * 300 if "Dense_2" in str(path) and "actor" in str(path) else leaf,
        policy.params,
    )
    policy = policy._replace(params=params)
    export_policy(trainer, policy, tmp_path, format=format)
    exported, meta = load_policy(tmp_path)
    obs = random_obs(trainer, scale=20.0)
    actions = np.asarray(exported(obs))
    unclipped = np.asarray(library_actions(trainer, policy, obs)[1])
    assert 0 < (np.abs(unclipped) > 2).mean() < 1  # some beyond the bounds, some within
    want = np.clip(unclipped, -2.0, 2.0)
    assert actions.shape == (33, 1)
    np.testing.assert_allclose(actions, want, atol=1e-5)
    without_stats = np.clip(
        library_actions(trainer, policy._replace(obs_stats=None), obs)[1], -2, 2
    )
    assert not np.allclose(actions, without_stats, atol=1e-3)  # the statistics are inside
    assert meta["action"]["low"] == [-2.0] and meta["action"]["high"] == [2.0]


@pytest.mark.parametrize("format", ["jax", "onnx"])
def test_recurrent_export_carries_its_state(tmp_path, format):
    trainer, policy = initial_policy(PPOConfig(recurrent=True, gru_size=16))
    export_policy(trainer, policy, tmp_path, format=format)
    exported, meta = load_policy(tmp_path)
    assert meta["recurrent"] and meta["rnn_size"] == 16
    if format == "onnx":
        assert meta["onnx_check"]["max_rnn_state_difference"] <= 1e-5
    obs = random_obs(trainer, 8)
    first = jnp.asarray([True, False] * 4)
    carry = jnp.asarray(np.random.default_rng(1).normal(size=(8, 16)), jnp.float32)
    action, new_carry = exported(obs, first, carry)
    want_carry, want_action = library_actions(trainer, policy, obs, first, carry)
    np.testing.assert_array_equal(np.asarray(action), np.asarray(want_action))
    np.testing.assert_allclose(np.asarray(new_carry), np.asarray(want_carry), atol=1e-6)


def test_an_onnx_model_that_disagrees_is_an_error_and_nothing_is_written(tmp_path, monkeypatch):
    trainer, policy = initial_policy(PPOConfig(env="Pendulum-v1"))
    jax2onnx, onnxruntime = export_module.onnx_modules()

    class Shifted:  # a converter whose model is off by 1e-3
        @staticmethod
        def to_onnx(fn, *args, **kwargs):
            return jax2onnx.to_onnx(lambda obs: fn(obs) + 1e-3, *args, **kwargs)

    monkeypatch.setattr(export_module, "onnx_modules", lambda: (Shifted, onnxruntime))
    with pytest.raises(ExportMismatch, match=r"max difference 0\.001"):
        export_policy(trainer, policy, tmp_path / "out", format="onnx")
    assert not (tmp_path / "out").exists()


def test_onnx_without_its_extra_is_refused_with_the_install_line(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def without_jax2onnx(name, *args, **kwargs):
        if name == "jax2onnx":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_jax2onnx)
    # Refused before the run directory is even read (it does not exist).
    assert (
        main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path), "--format", "onnx"]) == 2
    )
    assert "pip install 'purejaxppo[onnx]'" in capsys.readouterr().err
