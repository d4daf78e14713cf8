"""Runs sharded over devices and processes equal the unsharded `jit(vmap(train))`.

Several devices need `XLA_FLAGS` before jax is imported, so those checks run this file as
a worker script in subprocesses (`python tests/test_distributed.py MODE ...`); the
references are computed here, in the test process, on its own devices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from fast_compile import fast_tuning

# Only modules that leave the XLA backend alone (no gymnax) at the top: a worker process
# must call initialize_distributed first (`make_train` and the population come later).
from purejaxppo import ConfigError, Hyperparams, PPOConfig
from purejaxppo.runs.placement import (
    pad_runs,
    padded_run_count,
    put_runs,
    run_mesh,
    shard_over_runs,
    to_host,
    unpad_runs,
)
from purejaxppo.runs.processes import (
    ENV_COORDINATOR,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    initialize_distributed,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = PPOConfig(
    num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, update_epochs=1, num_minibatches=2
)
TIMEOUT_S = 120
COLLECTIVES = ("all-reduce", "all-gather", "collective-permute", "all-to-all", "reduce-scatter")


def population(num_seeds: int):
    """`num_seeds` seeds x 2 learning rates: 2 * num_seeds runs."""
    from purejaxppo.runs.population import build_population

    sweep = {"learning_rate": [1e-3, 3e-3]}
    return build_population(Hyperparams(), num_seeds=num_seeds, sweep=sweep)


def tiny_trainer():
    """`TINY`'s trainer, its programs compiled fast: what is compared here is placement, and
    every side of each comparison compiles with the same options."""
    from purejaxppo import make_train

    return make_train(TINY, tuning=fast_tuning(TINY))


def flatten(tree) -> dict[str, np.ndarray]:
    """`{path: host array}`; typed keys as their key data."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, x in leaves:
        if isinstance(x, jax.Array) and jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out[jax.tree_util.keystr(path)] = np.asarray(x)
    return out


# --- worker side (subprocesses) ---------------------------------------------------------


def worker_devices(out_dir: Path) -> None:
    """4 local devices: 4 runs and 6 runs (padded to 8) sharded, plus checks on the way."""
    trainer = tiny_trainer()
    mesh = run_mesh()
    options = trainer.tuning.compiler_options_dict()
    sharded = jax.jit(shard_over_runs(trainer, mesh), compiler_options=options)
    four = population(2)
    inputs = put_runs((four.keys, four.hyperparams), mesh)
    hlo = sharded.lower(*inputs).compile().as_text()
    output = sharded(*inputs)
    leaves = jax.tree.leaves(output)
    six = population(3)
    try:
        sharded(six.keys, six.hyperparams)
        indivisible_error = None
    except ValueError as error:
        indivisible_error = str(error)
    report = {
        "devices": jax.device_count(),
        "mesh_size": mesh.size,
        "collectives": {name: hlo.count(name) for name in COLLECTIVES},
        "output_specs": sorted({str(x.sharding.spec) for x in leaves}),
        "shard_rows": sorted({s.data.shape[0] for x in leaves for s in x.addressable_shards}),
        "shard_devices": sorted({len(x.addressable_shards) for x in leaves}),
        "indivisible_error": indivisible_error,
    }
    (out_dir / "report.json").write_text(json.dumps(report))
    np.savez(out_dir / "four.npz", **flatten(to_host(output)))
    from purejaxppo.runs.placement import MeshRuns
    from purejaxppo.runs.population import train_population

    six_output = train_population(trainer, six, MeshRuns(mesh))[0]
    np.savez(out_dir / "six.npz", **flatten(six_output))
    np.savez(out_dir / "eval.npz", **evaluated_both_ways(trainer, six_output.state, mesh))
    from purejaxppo.runs.placement import MeshRuns

    np.savez(out_dir / "pbt.npz", **pbt_run(MeshRuns(mesh)))


def pbt_run(placement=None) -> dict[str, np.ndarray]:
    """6 runs with a searched learning rate and a PBT step after updates 1 and 2, on
    `placement` (default: one device): the final state, metrics and PBT log on the host."""
    from purejaxppo.runs.chunked import compile_chunked, run_chunked
    from purejaxppo.runs.pbt_settings import PBTConfig
    from purejaxppo.runs.placement import LOCAL_RUNS, runs_to_host
    from purejaxppo.runs.population import population_of
    from purejaxppo.runs.search import SearchRange
    from purejaxppo.runs.spec import RunSpec
    from purejaxppo.runs.strategies import strategy_for

    placement = placement or LOCAL_RUNS
    search = {"learning_rate": SearchRange("log", 1e-4, 3e-2)}
    spec = RunSpec("pbt", TINY, num_seeds=6, search=search, strategy=PBTConfig(every=1))
    population = population_of(spec)
    strategy = strategy_for(spec.strategy, spec.search, spec.seed)
    program = compile_chunked(tiny_trainer(), population, 3, placement=placement, strategy=strategy)
    run = run_chunked(program, population)
    state = runs_to_host(placement, run.state, population.num_runs)
    log = run.log._asdict() | {"lr": run.log.hyperparams.learning_rate}
    del log["hyperparams"]
    return (
        flatten(state) | flatten(run.metrics) | {f"pbt.{k}": np.asarray(v) for k, v in log.items()}
    )


def assert_same_pbt(got: dict, want: dict) -> None:
    """The same PBT steps (parents, replaced: exactly) and runs equal up to rounding."""
    assert got.keys() == want.keys()
    for name in ("pbt.parents", "pbt.replaced", "pbt.update"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert want["pbt.replaced"].sum() == 2  # one run replaced at each of the 2 steps
    for name, value in want.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def evaluated_both_ways(trainer, state, mesh) -> dict[str, np.ndarray]:
    """The 6 runs' policies evaluated over the 4-device mesh (padded to 8) and locally."""
    from purejaxppo import policy_of
    from purejaxppo.runs.evaluation import evaluate_runs
    from purejaxppo.runs.placement import LOCAL_RUNS, MeshRuns

    policies, key = policy_of(TINY, state), jax.random.key(3)
    out = {}
    for name, placement in (("mesh", MeshRuns(mesh)), ("local", LOCAL_RUNS)):
        result = evaluate_runs(trainer, policies, key, 8, True, 60, placement=placement)
        out |= {f"{name}_{field}": value for field, value in result._asdict().items()}
    return out


def worker_process(out_dir: Path, port: int, process_id: int) -> None:
    """One of 2 processes with 2 devices each: 4 runs over the 4 global devices."""
    index, count = initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
    assert (index, count) == (process_id, 2)
    assert (jax.local_device_count(), jax.device_count()) == (2, 4), jax.devices()
    from purejaxppo.runs.placement import make_placement
    from purejaxppo.runs.population import train_population

    output = train_population(tiny_trainer(), population(2), make_placement())[0]
    np.savez(out_dir / f"process{process_id}.npz", **flatten(output))

    np.savez(out_dir / f"pbt{process_id}.npz", **pbt_run(make_placement()))


# --- test side --------------------------------------------------------------------------


def worker_env(num_devices: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        env.pop(name, None)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    # The checkout's package, and tests/ for the helpers this file imports.
    path = [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def start_worker(num_devices: int, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, args)],
        env=worker_env(num_devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_workers(procs: list[subprocess.Popen]) -> None:
    """Wait for all (at most TIMEOUT_S in all); a hang or a failure fails the test."""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for p in procs]
    except subprocess.TimeoutExpired:
        pytest.fail(f"workers did not finish within {TIMEOUT_S} s (hung?)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"worker {p.args[2:]} failed:\n{text[-4000:]}"


def unsharded(num_seeds: int) -> dict[str, np.ndarray]:
    runs, trainer = population(num_seeds), tiny_trainer()
    train = jax.jit(jax.vmap(trainer), compiler_options=trainer.tuning.compiler_options_dict())
    return flatten(train(runs.keys, runs.hyperparams))


@pytest.fixture(scope="module")
def reference6() -> dict[str, np.ndarray]:
    return unsharded(3)


@pytest.fixture(scope="module")
def reference4(reference6) -> dict[str, np.ndarray]:
    """Runs (lr, seed) of `population(2)` are rows 0, 1, 3, 4 of `population(3)`."""
    return {name: value[[0, 1, 3, 4]] for name, value in reference6.items()}


def assert_same_runs(got: dict, want: dict) -> None:
    """Every leaf of every run equal up to float32 rounding.

    Not bit-identical: a device's block of 1 or 2 runs compiles to another program than
    6 runs in one vmap, and XLA may sum in another order (observed: <= 1e-6 absolute
    after 3 updates, on params of size ~0.1 and losses of size ~1-10).
    """
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    # The runs differ from each other (the comparison is not between constants).
    loss = want[".metrics.total_loss"]
    assert len({tuple(row) for row in loss}) == loss.shape[0]


def test_padding_plain_and_key_arrays():
    assert [padded_run_count(r, 4) for r in (1, 4, 5, 8, 9)] == [4, 4, 8, 8, 12]
    assert padded_run_count(3, 1) == 3
    keys = jax.random.split(jax.random.key(0), 3)
    tree = {"x": np.arange(6.0).reshape(3, 2), "key": keys}
    padded = pad_runs(tree, 5)
    np.testing.assert_array_equal(padded["x"], [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    assert isinstance(padded["x"], np.ndarray)  # host values stay on the host
    assert padded["key"].shape == (5,) and padded["key"].dtype == keys.dtype
    data = jax.random.key_data(padded["key"])
    np.testing.assert_array_equal(data[:3], jax.random.key_data(keys))
    np.testing.assert_array_equal(data[3:], np.asarray(jax.random.key_data(keys))[[2, 2]])
    back = unpad_runs(padded, 3)
    np.testing.assert_array_equal(back["x"], tree["x"])
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), jax.random.key_data(keys))
    assert pad_runs(tree, 3) is tree
    with pytest.raises(ValueError, match="disagree"):
        pad_runs({"a": np.zeros(2), "b": np.zeros(3)}, 4)
    with pytest.raises(ValueError, match="fewer"):
        pad_runs(tree, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("127.0.0.1:1234", 2, 2), r"process_id must be an integer in \[0, 2\), got 2"),
        (("127.0.0.1:1234", 2, -1), r"process_id .* got -1"),
        (("127.0.0.1:1234", 0, 0), "num_processes must be a positive integer, got 0"),
        (("127.0.0.1", 2, 0), "coordinator_address must be host:port.*'127.0.0.1'"),
        (("localhost:http", 2, 0), "coordinator_address must be host:port"),
        ((":1234", 2, 0), "coordinator_address must be host:port"),
        (("127.0.0.1:1234", None, None), "num_processes, process_id not given"),
    ],
)
def test_initialize_distributed_rejects_bad_input(monkeypatch, args, message):
    for name in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=message):
        initialize_distributed(*args)
    assert not jax.distributed.is_initialized()


def test_initialize_distributed_after_backend_started_says_why():
    jax.devices()  # starts the backend in this (test) process
    with pytest.raises(RuntimeError, match=r"before anything starts the XLA backend.*gymnax"):
        initialize_distributed("127.0.0.1:1234", 2, 0)
    assert not jax.distributed.is_initialized()


def test_initialize_distributed_reads_environment(monkeypatch):
    monkeypatch.setenv(ENV_COORDINATOR, "127.0.0.1:1234")
    monkeypatch.setenv(ENV_NUM_PROCESSES, "two")
    monkeypatch.setenv(ENV_PROCESS_ID, "0")
    with pytest.raises(ConfigError, match=f"{ENV_NUM_PROCESSES} must be an integer, got 'two'"):
        initialize_distributed()
    monkeypatch.setenv(ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(ENV_PROCESS_ID, "5")
    with pytest.raises(ConfigError, match=r"\[0, 2\), got 5"):
        initialize_distributed()
    for name in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        monkeypatch.delenv(name)
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert initialize_distributed() == (0, 1)  # nothing given: one process, nothing done
    assert not jax.distributed.is_initialized()


# On the tests that compare with the module's references: one xdist worker computes them once.
shares_references = pytest.mark.xdist_group("placement_references")


@pytest.mark.slow
@shares_references
def test_sharded_over_four_devices_equals_unsharded(tmp_path, request):
    proc = start_worker(4, "devices", tmp_path)
    reference6 = request.getfixturevalue("reference6")  # compiled while the worker runs
    reference4 = request.getfixturevalue("reference4")
    pbt_reference = request.getfixturevalue("pbt_reference")
    finish_workers([proc])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["devices"] == report["mesh_size"] == 4
    assert report["collectives"] == dict.fromkeys(COLLECTIVES, 0), report["collectives"]
    assert report["output_specs"] == [str(jax.sharding.PartitionSpec("runs"))]
    assert report["shard_rows"] == [1] and report["shard_devices"] == [4]
    error = report["indivisible_error"]
    assert error is not None, "6 runs over 4 devices must raise ValueError"
    assert "6 runs" in error and "4 devices" in error and "pad_runs" in error
    assert_same_runs(dict(np.load(tmp_path / "four.npz")), reference4)
    assert_same_runs(dict(np.load(tmp_path / "six.npz")), reference6)
    # Evaluation spreads over the same mesh (6 runs padded to 8) and gives the local result.
    evaluated = dict(np.load(tmp_path / "eval.npz"))
    assert evaluated["mesh_returns"].shape == (6, 8)
    np.testing.assert_array_equal(evaluated["mesh_lengths"], evaluated["local_lengths"])
    np.testing.assert_array_equal(evaluated["mesh_finished"], evaluated["local_finished"])
    np.testing.assert_allclose(evaluated["mesh_returns"], evaluated["local_returns"], rtol=1e-6)
    # Population-based training over the mesh: its exploit steps see the whole population.
    assert_same_pbt(dict(np.load(tmp_path / "pbt.npz")), pbt_reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pbt_reference() -> dict[str, np.ndarray]:
    return pbt_run()


@pytest.mark.slow
@shares_references
def test_two_processes_equal_unsharded(tmp_path, reference4, request):
    port = free_port()
    procs = [start_worker(2, "process", tmp_path, port, i) for i in range(2)]
    pbt_reference = request.getfixturevalue("pbt_reference")  # compiled while they run
    finish_workers(procs)
    for i in range(2):  # every process gets the full results
        assert_same_runs(dict(np.load(tmp_path / f"process{i}.npz")), reference4)
        assert_same_pbt(dict(np.load(tmp_path / f"pbt{i}.npz")), pbt_reference)


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "devices":
        worker_devices(out)
    else:
        worker_process(out, int(sys.argv[3]), int(sys.argv[4]))
