"""Exported policies: the jax.export file gives the library policy's deterministic actions
(discrete exactly, continuous with observation normalisation to 1e-5, recurrent with its
carry), and a process that imports only jax and gymnax plays CartPole with it."""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import Hyperparams, PPOConfig, make_train
from purejaxppo.cli.main import main
from purejaxppo.outputs.export import export_policy, load_policy
from purejaxppo.ppo.evaluate import select_action
from purejaxppo.ppo.normalize import RunningStats
from purejaxppo.ppo.types import Policy


def initial_policy(config: PPOConfig, obs_stats=None) -> tuple:
    trainer = make_train(config)
    state = jax.jit(trainer.init)(jax.random.key(1), Hyperparams())
    return trainer, Policy(state.params, obs_stats)


def random_obs(trainer, batch=33, scale=2.0):
    rng = np.random.default_rng(0)
    return (scale * rng.normal(size=(batch, *trainer.spec.obs_shape))).astype(np.float32)


def library_actions(trainer, policy, obs, first=None, rnn_state=None):
    first = jnp.zeros(obs.shape[:1], bool) if first is None else first
    return select_action(trainer, policy, rnn_state, obs, first, jax.random.key(0), True)


def test_discrete_export_gives_the_library_actions_exactly(tmp_path):
    trainer, policy = initial_policy(PPOConfig())
    export_policy(trainer, policy, tmp_path, {"name": "cartpole"})
    exported, meta = load_policy(tmp_path)
    for batch in (1, 33):  # batch-polymorphic
        obs = random_obs(trainer, batch)
        actions = np.asarray(exported(obs))
        assert actions.dtype == np.int32 and actions.shape == (batch,)
        np.testing.assert_array_equal(actions, library_actions(trainer, policy, obs)[1])
    assert len(set(np.asarray(exported(random_obs(trainer))).tolist())) == 2  # not constant
    assert meta["action"] == {"kind": "discrete", "n": 2, "dtype": "int32"}
    assert (
        meta["signature"] == "obs f32[B, 4] -> action i32[B]" and meta["run"]["name"] == "cartpole"
    )


def test_continuous_export_normalises_and_clips(tmp_path):
    config = PPOConfig(env="Pendulum-v1", normalize_obs=True)
    stats = RunningStats(
        mean=jnp.asarray([0.5, -0.2, 1.0]),
        var=jnp.asarray([0.25, 4.0, 9.0]),
        count=jnp.asarray(10.0),
    )
    trainer, policy = initial_policy(config, stats)
    export_policy(trainer, policy, tmp_path)
    exported, meta = load_policy(tmp_path)
    obs = random_obs(trainer, scale=20.0)
    actions = np.asarray(exported(obs))
    want = np.clip(np.asarray(library_actions(trainer, policy, obs)[1]), -2.0, 2.0)
    assert actions.shape == (33, 1)
    np.testing.assert_allclose(actions, want, atol=1e-5)
    without_stats = np.clip(
        library_actions(trainer, policy._replace(obs_stats=None), obs)[1], -2, 2
    )
    assert not np.allclose(actions, without_stats, atol=1e-3)  # the statistics are inside
    assert meta["action"]["low"] == [-2.0] and meta["action"]["high"] == [2.0]


def test_recurrent_export_carries_its_state(tmp_path):
    trainer, policy = initial_policy(PPOConfig(recurrent=True, gru_size=16))
    export_policy(trainer, policy, tmp_path)
    exported, meta = load_policy(tmp_path)
    assert meta["recurrent"] and meta["rnn_size"] == 16
    obs = random_obs(trainer, 8)
    first = jnp.asarray([True, False] * 4)
    carry = jnp.asarray(np.random.default_rng(1).normal(size=(8, 16)), jnp.float32)
    action, new_carry = exported(obs, first, carry)
    want_carry, want_action = library_actions(trainer, policy, obs, first, carry)
    np.testing.assert_array_equal(np.asarray(action), np.asarray(want_action))
    np.testing.assert_allclose(np.asarray(new_carry), np.asarray(want_carry), atol=1e-6)


PLAYER = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, gymnax
    path = sys.argv[1]
    policy = jax.export.deserialize(bytearray(open(path + "/policy.jax", "rb").read()))
    env, params = gymnax.make("CartPole-v1")
    step = jax.jit(env.step)
    act = jax.jit(policy.call)
    returns = []
    for episode in range(5):
        key = jax.random.key(100 + episode)
        obs, state = env.reset(key, params)
        total, done = 0.0, False
        while not done:
            key, step_key = jax.random.split(key)
            action = act(obs[None])[0]
            obs, state, reward, terminated, truncated, info = step(step_key, state, action, params)
            total += float(reward)
            done = bool(terminated) or bool(truncated)
        returns.append(total)
    loaded = sorted(name for name in sys.modules if name.startswith("purejaxppo"))
    print(json.dumps({"returns": returns, "purejaxppo_modules": loaded}))
    """
)


@pytest.mark.slow
def test_an_exported_cartpole_policy_plays_without_purejaxppo(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "export"
    train = ["train", "--preset", "cartpole", "--out", str(run), "--no-progress"]
    assert main(train) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert meta["run"]["updates_done"] == 976 and meta["run"]["exported_run"]["seed"] == 0
    done = subprocess.run(
        [sys.executable, "-c", PLAYER, str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["purejaxppo_modules"] == []
    assert np.mean(result["returns"]) >= 475, result
    assert main(["export", str(run), "--run", "1", "--out", str(out)]) == 2
    assert "--run must lie in 0..0" in capsys.readouterr().err
