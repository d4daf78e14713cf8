"""Where the compiled trainer spends its time, kernel by kernel (XLA:CPU's own trace).

    python benchmarks/profile_kernels.py     # writes benchmarks/results/<device>/kernels.json

For the three target points of the cartpole grid (1 x 4, 16 x 4, 1 x 2048) it compiles
`--updates` update steps in one scan, as `train` compiles them, with XLA's per-kernel trace
events on (`xla_cpu_enable_xprof_traceme`), runs them once under `jax.profiler` and reads the
trace back: busy time per XLA worker thread, and each kernel's total time, classed as a matrix
product (a `dot`, or a fusion whose root is one) or the rest (elementwise and reductions,
sorts, copies). Tracing adds a cost per kernel, so the shares are what to read, not the
absolute times (the profiled wall time is stored beside the unprofiled one).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import jax

from purejaxppo.config import stack_hyperparams
from purejaxppo.outputs.machine import device_description, library_versions, results_dir
from purejaxppo.ppo.trainer import make_train
from purejaxppo.presets import PRESETS
from purejaxppo.runs.compile import compile_program, trainer_program
from purejaxppo.runs.placement import LOCAL_RUNS

POINTS = [(4, 1), (4, 16), (2048, 1)]


def product_kernels(hlo_text: str) -> set[str]:
    """Names of the kernels that are matrix products: `dot` instructions and fusions whose
    fused computation has a dot at its root."""
    dot_computations = set()
    for block in hlo_text.split("\n\n"):
        header = re.match(r"\s*%(\S+) ", block)
        if header and re.search(r"^\s*ROOT \S+ = \S+ dot\(", block, re.M):
            dot_computations.add(header.group(1))
    names = set(re.findall(r"^\s*%(\S+) = \S+ dot\(", hlo_text, re.M))
    for m in re.finditer(r"^\s*%(\S+) = .*? fusion\(.*?calls=%([\w.\-]+)", hlo_text, re.M):
        if m.group(2) in dot_computations:
            names.add(m.group(1))
    return names


def kernel_events(trace_dir: Path) -> tuple[list[dict], dict[tuple[int, int], str]]:
    path = sorted(trace_dir.glob("**/*.trace.json.gz"))[-1]
    trace = json.loads(gzip.decompress(path.read_bytes()))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    return [e for e in events if e.get("ph") == "X"], threads


def is_kernel(name: str, thread: str) -> bool:
    """A leaf kernel event on one of XLA's worker threads: not the executor's or the loops'
    own spans, nor anything on the Python thread."""
    worker = thread.startswith("tf_XLAEigen")
    return worker and not name.startswith(("Thunk", "Slinky", "while"))


def profile_point(num_envs: int, num_seeds: int, updates: int) -> dict:
    config, hp = PRESETS["cartpole"]
    config = config.replace(
        num_envs=num_envs, total_timesteps=num_envs * config.num_steps * updates
    )
    trainer = make_train(config)
    keys = jax.random.split(jax.random.key(0), num_seeds)
    hps = stack_hyperparams([hp] * num_seeds)
    # Mapped over runs as `train` does, with XLA's trace annotations on.
    init = compile_program(trainer_program(trainer, trainer.init, LOCAL_RUNS), (keys, hps))
    state = init.program(keys, hps)
    options = trainer.tuning.compiler_options_dict() | {"xla_cpu_enable_xprof_traceme": True}
    updates_only = trainer_program(
        trainer, lambda s, h: trainer.run_updates(h, s, updates), LOCAL_RUNS
    )
    compiled = compile_program(updates_only, (state, hps), compiler_options=options).program
    products = product_kernels(compiled.as_text())
    jax.block_until_ready(compiled(state, hps))
    walls = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(compiled(state, hps))
        walls.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        start = time.perf_counter()
        jax.block_until_ready(compiled(state, hps))
        profiled_wall = time.perf_counter() - start
        jax.profiler.stop_trace()
        events, threads = kernel_events(Path(tmp))
    per_kernel: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    per_thread: collections.Counter = collections.Counter()
    for e in events:
        thread = threads.get((e["pid"], e["tid"]), "")
        if is_kernel(e["name"], thread):
            per_kernel[e["name"]] += e["dur"]
            calls[e["name"]] += 1
            per_thread[thread] += e["dur"]
    total = sum(per_kernel.values())
    product_us = sum(v for k, v in per_kernel.items() if k in products)
    sort_us = sum(v for k, v in per_kernel.items() if k.startswith("sort"))

    def ms_per_update(us: float) -> float:
        return us / 1e3 / updates

    return {
        "num_envs": num_envs,
        "num_seeds": num_seeds,
        "updates": updates,
        "wall_ms_per_update": 1e3 * statistics.median(walls) / updates,
        "profiled_wall_ms_per_update": 1e3 * profiled_wall / updates,
        "kernel_ms_per_update": ms_per_update(total),
        "busy_ms_per_update_by_thread": {
            name: ms_per_update(us) for name, us in per_thread.most_common() if us > 0.01 * total
        },
        "share_matrix_products": product_us / total,
        "share_sort": sort_us / total,
        "share_other": 1.0 - (product_us + sort_us) / total,
        "top_kernels": [
            {
                "name": name,
                "ms_per_update": ms_per_update(us),
                "calls_per_update": calls[name] / updates,
                "matrix_product": name in products,
            }
            for name, us in per_kernel.most_common(20)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<device>")
    parser.add_argument("--updates", type=int, default=4)
    args = parser.parse_args()
    out = results_dir(args.out, Path(__file__).parent / "results")
    rows = []
    for num_envs, num_seeds in POINTS:
        row = profile_point(num_envs, num_seeds, args.updates)
        threads = ", ".join(f"{v:.1f}" for v in row["busy_ms_per_update_by_thread"].values())
        print(
            f"{num_seeds:>2} x {num_envs:<5} wall {row['wall_ms_per_update']:.2f} ms/update"
            f" (profiled {row['profiled_wall_ms_per_update']:.2f}); kernels busy {threads} ms"
            f" per thread; products {100 * row['share_matrix_products']:.0f}%,"
            f" sort {100 * row['share_sort']:.0f}%, rest {100 * row['share_other']:.0f}%",
            flush=True,
        )
        rows.append(row)
    result = {
        "device": device_description(),
        "versions": library_versions(),
        "tuning": make_train(PRESETS["cartpole"][0]).tuning.to_dict(),
        "points": rows,
    }
    (out / "kernels.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'kernels.json'}")


if __name__ == "__main__":
    main()
