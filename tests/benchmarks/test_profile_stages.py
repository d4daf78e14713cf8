"""benchmarks/profile_stages.py: the learner's product FLOPs per env step, counted from the
network, and each point's best case at given product rates."""

import pytest
from benchmark_scripts import load_benchmark_script

from purejaxppo.ppo.trainer import make_train
from purejaxppo.presets import PRESETS


def test_cartpole_product_flops_split_into_forward_and_backward():
    stages = load_benchmark_script("profile_stages")
    config = PRESETS["cartpole"][0]
    forward, backward = stages.forward_and_backward_flops(make_train(config))
    # By hand from the layer sizes: obs 4, two 64-wide hidden layers per tower, 2 actions.
    actor = 2 * (4 * 64 + 64 * 64 + 64 * 2)
    critic = 2 * (4 * 64 + 64 * 64 + 64 * 1)
    epochs = config.update_epochs
    # Acting (both towers' kernels counted), the critic on the final observations, and a
    # forward pass per epoch; backward: input and weight gradient per forward product.
    assert forward == actor + critic + critic + epochs * (actor + critic)
    assert backward == epochs * 2 * (actor + critic)
    assert stages.matmul_flops_per_env_step(make_train(config)) == forward + backward


def test_best_case_is_the_env_plus_products_at_their_rates():
    stages = load_benchmark_script("profile_stages")
    row = {"num_envs": 2048, "num_seeds": 1, "env_steps_per_update": 1000}
    row["env_only_ms_per_update"] = 1.0
    products = {
        "forward_65536x64x64": {"gflops_per_s": 100.0},
        "forward_and_weight_grad_65536x64x64": {"gflops_per_s": 50.0},
    }
    best = stages.best_case(row, products, (2e6, 4e6))
    # 1000 steps x (2 MFLOP at 100 GFLOP/s + 4 MFLOP at 50 GFLOP/s) = 100 ms, plus the env.
    assert best["best_case_ms_per_update"] == pytest.approx(101.0)
    assert best["best_case_fraction_of_floor"] == pytest.approx(1.0 / 101.0)
    assert best["best_case_rates"] == list(stages.BEST_CASE_RATES[(2048, 1)])
    with pytest.raises(KeyError):
        stages.best_case({**row, "num_envs": 3}, products, (2e6, 4e6))
