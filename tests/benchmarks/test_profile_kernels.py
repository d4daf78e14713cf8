"""benchmarks/profile_kernels.py on a tiny point: XLA's kernel trace is read back, the
matrix products are told from the rest, and the shares add up."""

import jax
import jax.numpy as jnp
import pytest
from benchmark_scripts import load_benchmark_script


def test_products_are_told_from_elementwise_kernels():
    kernels = load_benchmark_script("profile_kernels")
    x = jnp.ones((256, 64))
    text = jax.jit(lambda x: jnp.tanh(x @ x.T).sum() + jnp.exp(x).sum()).lower(x).compile()
    names = kernels.product_kernels(text.as_text())
    assert names, "the product is found"
    hlo = text.as_text()
    assert all(f"%{name} = " in hlo for name in names)
    assert not any("exp" in name or "tanh" in name for name in names)


@pytest.mark.slow
def test_profile_point_reads_the_trace():
    kernels = load_benchmark_script("profile_kernels")
    row = kernels.profile_point(num_envs=2, num_seeds=2, updates=1)
    shares = row["share_matrix_products"] + row["share_sort"] + row["share_other"]
    assert abs(shares - 1.0) < 1e-9
    assert 0.0 < row["share_matrix_products"] < 1.0
    assert row["kernel_ms_per_update"] > 0.0
    assert row["busy_ms_per_update_by_thread"]
    assert any(k["matrix_product"] for k in row["top_kernels"])
    assert any(not k["matrix_product"] for k in row["top_kernels"])
