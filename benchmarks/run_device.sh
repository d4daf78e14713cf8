#!/usr/bin/env bash
# The accelerator benchmarks, prepared for one short call of a lent GPU machine.
#
#   bash benchmarks/device_wheels.sh                 # here, once: gymnax & co. -> .whl/
#   bash benchmarks/run_device.sh [target] [grid]    # there, with .whl carried; default both
#
# target: the issue's figure, 2048 CartPole agents x 500k steps each (cartpole preset: 4
#   envs x 128 steps per agent), first as a user runs it (`purejaxppo train`, process start
#   to exit, compile included), then `purejaxppo bench` at 1, 256 and 2048 agents (compile
#   apart from the median of 3 timed calls, against the env-only floor).
# grid: benchmarks/run_grid.py's standard grid, in one process.
# Results go to $OUT (the device tool's folder; runs/device elsewhere): log.txt,
# target/bench.json and grid/{bench.json,results.md} plus their plots, 8 files in all.
# Commit them under benchmarks/results/<device>/. QUICK=1 shrinks every size, to check
# this script on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device}
mkdir -p "$OUT/target" "$OUT/grid"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
stages=${*:-target grid}
agents=2048 seeds=1,256,2048 steps=500000 grid=()
if [ "${QUICK:-0}" = 1 ]; then
    agents=4 seeds=1,4 steps=4096 grid=(--total-timesteps 2048 --repeats 3)
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

run_target() {
    echo "== $agents CartPole agents x $steps steps: purejaxppo train, compile included"
    local start
    start=$(now)
    $py -m purejaxppo train --preset cartpole --num-seeds "$agents" \
        --total-timesteps "$steps" --no-progress --out "$(mktemp -d)/train" || return 1
    echo "wall time, process start to exit: $(elapsed "$start") s"
    echo "== purejaxppo bench: compile apart, median of 3 calls, env-only floor"
    $py -m purejaxppo bench --preset cartpole --num-envs 4 --num-seeds "$seeds" \
        --total-timesteps "$steps" --repeats 3 --out "$OUT/target"
}

run_standard_grid() {
    echo "== benchmarks/run_grid.py, one process"
    $py benchmarks/run_grid.py --processes 1 "${grid[@]}" --out "$OUT/grid"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
    $py -c "import jax; print('jax', jax.__version__, jax.devices())"
    for stage in $stages; do
        start=$(now)
        case "$stage" in
            target) run_target ;;
            grid) run_standard_grid ;;
            *) echo "unknown stage '$stage' (target, grid)"; exit 2 ;;
        esac
        echo "== $stage: rc $?, $(elapsed "$start") s"
    done
} 2>&1 | tee "$OUT/log.txt"
