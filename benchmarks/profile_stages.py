"""Where a PPO update's time goes on this machine: stage timings and matrix-product rates.

    python benchmarks/profile_stages.py      # writes benchmarks/results/<device>/stages.json

For the three target points of the cartpole grid (1 x 4, 16 x 4, 1 x 2048) it compiles three
programs with the same scan shape and alternates their calls (median of `--repeats`):
the whole trainer, the rollouts alone (the same `collect_rollout` from the same init, no
update) and the env-only floor. `update = trainer - rollouts`. Beside them it times the
products the update is made of, in a loop so launch costs are amortised: a 128-sample
hidden layer (the 1 x 4 minibatch), the same for 16 runs at once (what `vmap` over seeds
makes of it), and a 65,536-sample forward product, alone and followed by its weight
gradient (the 1 x 2048 minibatch); also two independent 128-sample layers at once (whether
XLA:CPU overlaps the actor's and critic's products) and one with bfloat16 inputs. The
learner's matrix arithmetic per env step is counted from the network's kernels, and each
point's best case is the env alone plus its products at the measured rates
(`best_case`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from purejaxppo.config import Hyperparams, stack_hyperparams
from purejaxppo.outputs.machine import device_description, library_versions, results_dir
from purejaxppo.ppo.rollout import collect_rollout
from purejaxppo.ppo.trainer import Trainer, draw_update_randomness, init_state, make_train
from purejaxppo.ppo.types import Actors
from purejaxppo.presets import PRESETS
from purejaxppo.runs import bench
from purejaxppo.runs.compile import compile_program, trainer_program
from purejaxppo.runs.placement import LOCAL_RUNS

POINTS = [(4, 1), (4, 16), (2048, 1)]


def rollouts_only(trainer: Trainer):
    """`num_updates` rollouts from the initial params: the trainer without its update."""
    config = trainer.config

    def run(key, hp):
        key_init, key = jax.random.split(key)
        state = init_state(trainer, key_init, hp)

        def body(actors, key):
            noise = draw_update_randomness(trainer, key).rollout
            actors, tr = collect_rollout(trainer, state.params, actors, noise)
            # Every float output is used, so XLA keeps all the work the trainer does.
            floats = [x for x in jax.tree.leaves(tr) if jnp.issubdtype(x.dtype, jnp.floating)]
            return actors, sum(jnp.sum(x) for x in floats)

        keys = jax.random.split(key, config.num_updates)
        _, out = jax.lax.scan(body, Actors(state.runner, state.rnn_state), keys)
        return out.sum()

    return run


def matmul_flops_per_env_step(trainer: Trainer) -> float:
    """The learner's matrix-product FLOPs per env step: a forward pass of both towers to act,
    one of the critic for `next_value`, and per epoch a forward and backward pass (about 3x
    a forward). XLA's cost analysis counts a loop body once, so it cannot give this."""
    return sum(forward_and_backward_flops(trainer))


def forward_and_backward_flops(trainer: Trainer) -> tuple[float, float]:
    """`matmul_flops_per_env_step` in two parts: forward products (acting, the critic's
    values, each epoch's forward pass) and backward ones (each epoch's two products per
    forward one: input and weight gradients)."""
    params = jax.eval_shape(lambda k: trainer.init(k, Hyperparams()).params, jax.random.key(0))
    per_tower: dict[str, float] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        names = [str(getattr(p, "key", p)) for p in path]
        if names[-1] == "kernel":
            tower = names[1]
            per_tower[tower] = per_tower.get(tower, 0.0) + 2.0 * leaf.size
    forward = sum(per_tower.values())
    epochs = trainer.config.update_epochs
    return forward + per_tower.get("critic", 0.0) + epochs * forward, epochs * 2 * forward


# Which measured product rates bound each point's products (keys of `product_rates`): the
# forward ones, then the backward ones.
BEST_CASE_RATES = {
    (4, 1): ("hidden_128x64x64", "hidden_128x64x64"),
    (4, 16): ("hidden_16_runs_batched", "hidden_16_runs_batched"),
    (2048, 1): ("forward_65536x64x64", "forward_and_weight_grad_65536x64x64"),
}


def best_case(row: dict, products: dict, flops: tuple[float, float]) -> dict:
    """The fastest update the measured product rates allow at this point: the env alone
    plus every forward and backward product at the rate `BEST_CASE_RATES` names for it."""
    forward_rate, backward_rate = BEST_CASE_RATES[(row["num_envs"], row["num_seeds"])]
    steps = row["env_steps_per_update"]
    products_ms = (
        1e3
        * steps
        * (
            flops[0] / (1e9 * products[forward_rate]["gflops_per_s"])
            + flops[1] / (1e9 * products[backward_rate]["gflops_per_s"])
        )
    )
    best_ms = row["env_only_ms_per_update"] + products_ms
    return {
        "best_case_ms_per_update": best_ms,
        "best_case_fraction_of_floor": row["env_only_ms_per_update"] / best_ms,
        "best_case_rates": [forward_rate, backward_rate],
    }


def stage_times(num_envs: int, num_seeds: int, repeats: int) -> dict:
    config, hp = PRESETS["cartpole"]
    config = bench.grid_point_config(config.replace(total_timesteps=131_072), num_envs, 4)
    trainer = make_train(config)
    keys = jax.random.split(jax.random.key(0), num_seeds)
    hps = stack_hyperparams([hp] * num_seeds)
    # Mapped over runs as `train` does; the floor as `bench` does.
    train, compile_s = bench.compile_trained(trainer, (keys, hps))
    options = trainer.tuning.compiler_options_dict()
    rollouts = trainer_program(trainer, rollouts_only(trainer), LOCAL_RUNS)
    rollout = compile_program(rollouts, (keys, hps), compiler_options=options).program
    env_only = LOCAL_RUNS.map(bench.make_env_only(trainer.env, config))
    floor = compile_program(env_only, (keys,)).program
    times = bench.time_alternating(
        [(train, (keys, hps)), (rollout, (keys, hps)), (floor, (keys,))], repeats
    )
    per_update = [statistics.median(t) / config.num_updates for t in times]
    flops = matmul_flops_per_env_step(trainer)
    return {
        "num_envs": num_envs,
        "num_seeds": num_seeds,
        "num_updates": config.num_updates,
        "compile_s": compile_s,
        "trainer_ms_per_update": 1e3 * per_update[0],
        "rollout_ms_per_update": 1e3 * per_update[1],
        "update_ms_per_update": 1e3 * (per_update[0] - per_update[1]),
        "env_only_ms_per_update": 1e3 * per_update[2],
        "fraction_of_floor": per_update[2] / per_update[0],
        "env_steps_per_update": num_seeds * config.batch_size,
        "matmul_flops_per_env_step": flops,
        "learner_gflops_per_s": flops * num_seeds * config.batch_size / per_update[0] / 1e9,
    }


def loop_rate(fn, args, iterations: int, flops_per_iteration: float) -> dict:
    """GFLOP/s and microseconds per iteration of `fn` run `iterations` times in a fori_loop."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(7):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times) / iterations
    return {"us_per_product": 1e6 * seconds, "gflops_per_s": flops_per_iteration / seconds / 1e9}


def product_rates() -> dict:
    key_x, key_w = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (128, 64))
    w = 0.1 * jax.random.normal(key_w, (64, 64))
    xs, ws = jnp.stack([x] * 16), jnp.stack([w] * 16)
    big = jax.random.normal(key_x, (65536, 64))
    n, small, many = 1000, 2 * 128 * 64 * 64, 2 * 16 * 128 * 64 * 64

    def hidden(x, w):
        return jax.lax.fori_loop(0, n, lambda i, x: jnp.tanh(x @ w), x)

    def hidden_runs(x, w):
        return jax.lax.fori_loop(0, n, lambda i, x: jnp.tanh(jnp.einsum("kbi,kij->kbj", x, w)), x)

    def two_independent_hidden(x, w):  # the actor's and the critic's layers, as in a step
        def both(i, xy):
            return jnp.tanh(xy[0] @ w), jnp.tanh(xy[1] @ (w + 1.0))

        return jax.lax.fori_loop(0, n, both, (x, x))

    def hidden_bf16_inputs(x, w):  # float32 accumulation (not used by the trainer)
        def layer(i, x):
            product = jnp.dot(
                x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32
            )
            return jnp.tanh(product)

        return jax.lax.fori_loop(0, n, layer, x)

    def forward_big(x, w):
        return jax.lax.fori_loop(0, 20, lambda i, w: w + 1e-9 * (x @ w)[:64], w)

    def forward_and_weight_grad_big(x, w):  # x.T @ x alone would be hoisted out of the loop
        return jax.lax.fori_loop(0, 20, lambda i, w: w - 1e-9 * (x.T @ (x @ w)), w)

    big_flops = 2 * 65536 * 64 * 64
    return {
        "hidden_128x64x64": loop_rate(hidden, (x, w), n, small),
        "hidden_16_runs_batched": loop_rate(hidden_runs, (xs, ws), n, many),
        # Two independent layers per iteration (its `us_per_product` is for both): about
        # twice one layer if XLA:CPU runs them one after the other, about one if it
        # overlaps them on the two cores.
        "two_independent_hidden_128x64x64": loop_rate(two_independent_hidden, (x, w), n, 2 * small),
        "hidden_128x64x64_bf16_inputs": loop_rate(hidden_bf16_inputs, (x, w), n, small),
        "forward_65536x64x64": loop_rate(forward_big, (big, w), 20, big_flops),
        "forward_and_weight_grad_65536x64x64": loop_rate(
            forward_and_weight_grad_big, (big, w), 20, 2 * big_flops
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<device>")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    out = results_dir(args.out, Path(__file__).parent / "results")
    stages = []
    for num_envs, num_seeds in POINTS:
        row = stage_times(num_envs, num_seeds, args.repeats)
        print(
            f"{num_seeds:>2} x {num_envs:<5} ms/update: trainer {row['trainer_ms_per_update']:.2f}"
            f"  rollout {row['rollout_ms_per_update']:.2f}"
            f"  update {row['update_ms_per_update']:.2f}"
            f"  env only {row['env_only_ms_per_update']:.2f}"
            f"  ({row['matmul_flops_per_env_step'] / 1e3:.0f} kFLOP/step,"
            f" {row['learner_gflops_per_s']:.0f} GFLOP/s)",
            flush=True,
        )
        stages.append(row)
    products = product_rates()
    for name, rate in products.items():
        print(f"{name}: {rate['us_per_product']:.1f} us, {rate['gflops_per_s']:.0f} GFLOP/s")
    flops = forward_and_backward_flops(make_train(PRESETS["cartpole"][0]))
    for row in stages:
        row.update(best_case(row, products, flops))
        print(
            f"{row['num_seeds']:>2} x {row['num_envs']:<5} best case at these rates: "
            f"{row['best_case_ms_per_update']:.2f} ms/update, "
            f"{100 * row['best_case_fraction_of_floor']:.1f}% of the floor"
        )
    result = {
        "device": device_description(),
        "versions": library_versions(),
        "stages": stages,
        "products": products,
    }
    (out / "stages.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'stages.json'}")


if __name__ == "__main__":
    main()
