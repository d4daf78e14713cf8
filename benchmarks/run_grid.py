"""The standard throughput grid: cartpole preset, PPO against the env-only floor.

    python benchmarks/run_grid.py            # writes benchmarks/results/<device>/

Points: 1 run x {4, 64, 512, 2048} envs and 16 runs x {4, 64} envs, 128 steps, 4 epochs x
4 minibatches (the cartpole preset), 131,072 env steps per run (at least 4 updates), the
median of 5 calls alternated with the floor's. Writes bench.json, the two plots and
results.md (the table the README quotes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from purejaxppo import bench, report
from purejaxppo.presets import PRESETS

GRID = [((4, 64, 512, 2048), (1,)), ((4, 64), (16,))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<device>")
    parser.add_argument("--total-timesteps", type=int, default=131_072)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / report.device_slug()
    out.mkdir(parents=True, exist_ok=True)
    config, hp = PRESETS["cartpole"]
    config = config.replace(total_timesteps=args.total_timesteps)
    device, versions = report.device_description(), report.library_versions()
    rows = []
    for num_envs, num_seeds in GRID:
        rows += bench.run_grid(config, hp, num_envs, num_seeds, args.repeats, on_row=print_row)
    for row in rows:
        row.update(device=device, versions=versions, hyperparams=hp.to_dict(), name="cartpole")
    report.write_json(out / "bench.json", rows)
    bench.plot_grid(rows, out)
    (out / "results.md").write_text(markdown_table(rows, device, versions))
    bench.print_rows(rows)
    print(f"wrote {out}")


def print_row(row: dict) -> None:
    print(
        f"{row['num_envs']:>5} envs x {row['num_seeds']:>2} runs: SPS {row['sps']:>12,.0f}  "
        f"floor {row['env_only_sps']:>12,.0f}  {100 * row['fraction_of_floor']:5.1f}%  "
        f"compile {row['compile_s']:.2f} s",
        flush=True,
    )


def markdown_table(rows: list[dict], device: str, versions: dict) -> str:
    lines = [
        f"Device `{device}`, jax {versions['jax']}; cartpole preset; median of alternated calls.",
        "",
        "| runs x envs | SPS (all runs) | env-only SPS | % of floor | compile s | peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['num_seeds']} x {r['num_envs']} | {r['sps']:,.0f} | {r['env_only_sps']:,.0f} "
            f"| {100 * r['fraction_of_floor']:.1f} | {r['compile_s']:.2f} "
            f"| {r['peak_bytes'] / 2**20:,.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
