"""Backend tuning, decided once: how the trainer's programs are shaped for the machine.

None of these choices changes the algorithm (the samples, gradient steps and hyperparameters
stay the same); they change how the computation is laid out, and so its speed and its
float32 rounding. `make_train` picks `Tuning.for_backend(jax.default_backend(), ...)`
unless given one; every stage reads `trainer.tuning`, never the backend. On GPU and TPU
the plain code path is used until a measurement there says otherwise; the CPU choices
were each measured on this project's 2-core CPU (benchmarks/README.md, "Why the code is
shaped as it is").
"""

from __future__ import annotations

import dataclasses
from typing import Any

# On the CPU, rollouts and single runs up to this many samples take the small-program paths
# below, and larger minibatches are sliced to it, because beyond it activations leave cache.
CPU_SMALL_SAMPLES = 16384
CPU_COMPILER_OPTIONS = (("xla_backend_optimization_level", 1),)


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How the trainer's programs are laid out on one backend (frozen, hashable)."""

    backend: str = "cpu"
    """The backend these choices were made for (`jax.default_backend()`)."""

    values_after_scan: bool = False
    """Compute a rollout's values after its scan in one pass, instead of at every step:
    fewer kernels per step, which pays off where kernel launches dominate."""

    gradient_slice: int | None = None
    """At most this many samples per gradient pass: a larger flat minibatch's gradient is
    taken in equal slices and averaged, so activations stay in cache. None: one pass."""

    single_run_unbatched: bool = False
    """Trace a population of one run without `vmap` (the same computation, a smaller
    program to compile)."""

    compiler_options: tuple[tuple[str, Any], ...] = ()
    """XLA options the trainer's programs are compiled with, as (name, value) pairs."""

    column_log_softmax: bool = False
    """Take a categorical's log-softmax over few actions column by column (elementwise ops
    XLA fuses) rather than as a reduction over a short last axis."""

    weight_gradient_product: bool = False
    """Dense layers use `kernels.dense_product`, whose weight gradient is computed in the
    orientation XLA:CPU runs fastest; False: the plain product and autodiff."""

    @classmethod
    def for_backend(cls, backend: str, samples_per_update: int) -> Tuning:
        """The tuning for `backend` ("cpu", "gpu", "tpu", ...) and a run collecting
        `samples_per_update` env steps per update (num_steps x num_envs)."""
        if backend != "cpu":
            return cls(backend=backend)
        # Values after the scan and unbatched single-run tracing pay off for small rollouts only.
        small = samples_per_update <= CPU_SMALL_SAMPLES
        size_dependent = {"values_after_scan": small, "single_run_unbatched": small}
        return cls(
            backend="cpu",
            gradient_slice=CPU_SMALL_SAMPLES,
            compiler_options=CPU_COMPILER_OPTIONS,
            column_log_softmax=True,
            weight_gradient_product=True,
            **size_dependent,
        )

    @classmethod
    def plain(cls, backend: str = "cpu") -> Tuning:
        """Every choice off: the straightforward program, for comparison."""
        return cls(backend=backend)

    def compiler_options_dict(self) -> dict[str, Any]:
        """`compiler_options` as the dict `jax.jit(..., compiler_options=...)` takes (fresh:
        callers may extend it)."""
        return dict(self.compiler_options)

    def to_dict(self) -> dict[str, Any]:
        """As JSON (config.json, bench.json)."""
        data = dataclasses.asdict(self)
        data["compiler_options"] = self.compiler_options_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tuning:
        """The inverse of `to_dict`."""
        fields = dict(data)
        fields["compiler_options"] = tuple(sorted(dict(fields.get("compiler_options", {})).items()))
        return cls(**fields)
