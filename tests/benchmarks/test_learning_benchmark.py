"""benchmarks/learning.py on a tiny budget: learning.json, learning.md and a PNG per preset."""

import json
import math

from benchmark_scripts import load_benchmark_script


def test_learning_benchmark_writes_json_table_and_curves(tmp_path):
    learning = load_benchmark_script("learning")
    argv = ["--presets", "mountaincar-continuous", "--seeds", "2", "--total-timesteps", "4096"]
    rows = learning.main([*argv, "--eval-episodes", "2", "--out", str(tmp_path)])
    assert [row["preset"] for row in rows] == ["mountaincar-continuous"]

    data = json.loads((tmp_path / "learning.json").read_text())
    (row,) = data["presets"]
    assert row["env"] == "MountainCarContinuous-v0"
    assert row["seeds"] == 2 and row["env_steps_per_run"] == 4096
    assert len(row["final_return"]["per_run"]) == 2
    assert all(math.isfinite(v) for v in row["eval_return"]["per_run"])
    assert row["eval_return"]["episodes_per_run"] == 2
    assert row["wall_s"] >= row["compile_s"] > 0 and row["run_s"] > 0
    assert row["reference"]["low"] == 91.7 and "rl-baselines-zoo" in row["reference"]["source"]
    assert row["met"] is (row["final_return"]["mean"] >= row["reference"]["met_at"])
    assert not row["nonfinite_loss"]
    assert data["device"] and data["versions"]["jax"]

    table = (tmp_path / "learning.md").read_text()
    assert "| mountaincar-continuous | MountainCarContinuous-v0 | 4,096 | 2 |" in table
    assert "--total-timesteps 4096" in table
    png = (tmp_path / "mountaincar-continuous.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_earlier_rows_of_other_presets_are_kept(tmp_path):
    learning = load_benchmark_script("learning")
    path = tmp_path / "learning.json"
    rows = [{"preset": "cartpole"}, {"preset": "acrobot"}]
    path.write_text(json.dumps({"device": "cpu:cpu x1", "presets": rows}))
    assert learning.earlier_rows(path, "cpu:cpu x1", ["acrobot"]) == [{"preset": "cartpole"}]
    assert learning.earlier_rows(path, "gpu:H100 x1", ["acrobot"]) == []
    assert learning.earlier_rows(tmp_path / "missing.json", "cpu:cpu x1", []) == []


def test_reference_is_met_within_five_percent_of_its_worse_end():
    learning = load_benchmark_script("learning")
    pendulum = learning.REFERENCES["pendulum"]
    assert math.isclose(pendulum.met_at, -178.5)
    assert learning.is_met(-175.0, pendulum) and not learning.is_met(-180.0, pendulum)
    assert not learning.is_met(None, pendulum)
    assert learning.is_met(1.0, None) is None
    assert learning.REFERENCES["cartpole"].met_at == 475
