"""A trained CartPole policy (the cartpole preset, one run) leaves the library: its jax
export plays at >= 475 in a process that imports only jax and gymnax, its ONNX model does so
under onnxruntime (gymnax, and so jax, steps the env; purejaxppo is not imported), and its
rendered GIF has one frame per step.
The tests share one training run and one xdist worker."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from purejaxppo.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trained_cartpole")]

# Plays 5 CartPole episodes with an exported policy; prints the returns and which of
# purejaxppo / jax were imported. argv: the export directory and the format.
PLAYER = textwrap.dedent(
    """
    import json, sys
    import gymnax, jax
    path, form = sys.argv[1], sys.argv[2]
    if form == "jax":
        policy = jax.export.deserialize(bytearray(open(path + "/policy.jax", "rb").read()))
        act = jax.jit(policy.call)
    else:
        import numpy as np, onnxruntime
        session = onnxruntime.InferenceSession(path + "/policy.onnx")
        act = lambda obs: session.run(None, {"obs": np.asarray(obs, np.float32)})[0]
    env, params = gymnax.make("CartPole-v1")
    step = jax.jit(env.step)
    returns = []
    for episode in range(5):
        key = jax.random.key(100 + episode)
        obs, state = env.reset(key, params)
        total, done = 0.0, False
        while not done:
            key, step_key = jax.random.split(key)
            action = int(act(obs[None])[0])
            obs, state, reward, terminated, truncated, info = step(step_key, state, action, params)
            total += float(reward)
            done = bool(terminated) or bool(truncated)
        returns.append(total)
    loaded = sorted(name for name in sys.modules if name.startswith("purejaxppo"))
    print(json.dumps({"returns": returns, "purejaxppo_modules": loaded}))
    """
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--preset", "cartpole", "--out", str(run), "--no-progress"]) == 0
    return run


def play(export_dir, form):
    done = subprocess.run(
        [sys.executable, "-c", PLAYER, str(export_dir), form],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_jax_export_plays_without_purejaxppo(trained_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert meta["run"]["updates_done"] == 976 and meta["run"]["exported_run"]["seed"] == 0
    result = play(out, "jax")
    assert result["purejaxppo_modules"] == []
    assert np.mean(result["returns"]) >= 475, result
    assert main(["export", str(trained_run), "--run", "1", "--out", str(out)]) == 2
    assert "--run must lie in 0..0" in capsys.readouterr().err


def test_the_onnx_model_plays_under_onnxruntime(trained_run, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(trained_run), "--out", str(out), "--format", "onnx"]) == 0
    assert "wrote" in capsys.readouterr().out and not (out / "policy.jax").exists()
    meta = json.loads((out / "policy.json").read_text())
    assert meta["format"] == "onnx" and meta["onnx_check"]["max_action_difference"] == 0.0
    result = play(out, "onnx")
    assert result["purejaxppo_modules"] == []
    assert np.mean(result["returns"]) >= 475, result


def test_the_rendered_gif_has_one_frame_per_step(trained_run, tmp_path, capsys):
    out = tmp_path / "episode.gif"
    assert main(["render", str(trained_run), "--out", str(out), "--seed", "3"]) == 0
    said = capsys.readouterr().out
    with Image.open(out) as gif:
        frames = gif.n_frames
    assert said == f"wrote {out}: {frames} frames, deterministic episode returns {frames}.0\n"
    assert frames >= 475  # the trained policy balances (almost) to the time limit
