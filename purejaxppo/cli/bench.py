"""`purejaxppo bench`: steps per second of a grid of (num_envs, num_seeds) points against
the env-only floor; bench.json, two plots and a table."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from purejaxppo.cli.values import (
    enable_compilation_cache,
    parse_int_list,
    prepare_output_dir,
    source_spec,
    split_assignment,
    with_settings,
)
from purejaxppo.errors import ConfigError


def run_bench(args: argparse.Namespace) -> int:
    """Check every grid point (valid and fits) before the first compile, then time them."""
    num_envs = parse_int_list("--num-envs", args.num_envs)
    num_seeds = parse_int_list("--num-seeds", args.num_seeds)
    counts = ("--repeats", "--min-updates", "--total-timesteps", "--chunk-updates")
    for flag in counts:  # `BenchOptions` checks them too, but only once jax is imported
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if any(split_assignment(item, "--set")[0] == "num_envs" for item in args.set):
        raise ConfigError("bench takes num_envs from --num-envs (a comma list), not --set")
    # The grid's first point; --total-timesteps applies per point, where --min-updates may raise it.
    spec = with_settings(source_spec(args), args.set, None, num_envs[0])
    from purejaxppo.outputs import console, plots  # after the checks of the arguments alone
    from purejaxppo.outputs.machine import device_description, library_versions
    from purejaxppo.outputs.summary import write_json
    from purejaxppo.runs import bench

    options = bench.BenchOptions(
        repeats=args.repeats,
        min_updates=args.min_updates,
        total_timesteps=args.total_timesteps,
        chunk_updates=args.chunk_updates,
        trace_dir=args.profile,
    )
    enable_compilation_cache(args.compilation_cache)  # before gymnax's import compiles
    check_grid(spec.config, num_envs, max(num_seeds), options)
    out = args.out or Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    prepare_output_dir(out)
    if args.profile is not None:
        prepare_output_dir(args.profile)
    device, versions = device_description(), library_versions()
    print(f"bench {spec.name} ({spec.config.env}) on {device}", flush=True)
    rows = bench.run_grid(spec.config, spec.hyperparams, num_envs, num_seeds, options, show_row)
    hyperparams = spec.hyperparams.to_dict()
    for row in rows:
        row.update(device=device, versions=versions, hyperparams=hyperparams, name=spec.name)
    write_json(out / "bench.json", rows)
    plots.plot_grid(rows, out)
    console.print_rows(rows)
    print(f"wrote {out}/bench.json, sps_vs_num_envs.png, fraction_of_floor.png")
    return 0


def check_grid(config: Any, num_envs: list[int], max_seeds: int, options: Any) -> None:
    """Every grid point is a valid config, and its largest population fits."""
    from purejaxppo.envs.setup import make_env
    from purejaxppo.runs import bench
    from purejaxppo.runs.memory_budget import check_fits

    points = bench.grid_point_configs(
        config, num_envs, options.min_updates, options.total_timesteps, options.chunk_updates
    )
    setup = make_env(config.env)
    for point in points:
        check_fits(point, setup, max_seeds)


def show_row(row: dict[str, Any]) -> None:
    """One grid point's figures as they come."""
    chunked = (
        f", chunked ({row['num_chunks']} chunks) {row['chunked_sps']:,.0f} SPS, "
        f"overhead {100 * row['chunk_overhead']:+.1f}%"
        if "chunk_overhead" in row
        else ""
    )
    print(
        f"  {row['num_envs']:>6} envs x {row['num_seeds']:>4} runs: compile "
        f"{row['compile_s']:.2f} s, SPS {row['sps']:,.0f}, env-only {row['env_only_sps']:,.0f}"
        f" ({100 * row['fraction_of_floor']:.1f}%){chunked}",
        flush=True,
    )
