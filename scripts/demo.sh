#!/usr/bin/env bash
# Install, then train the cartpole preset with 16 seeds in one compiled program.
# Prints the summary table; writes runs/demo/{config.json,metrics.csv,summary.json,
# learning_curve.png,checkpoints/} (a previous runs/demo is replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf runs/demo
exec .venv/bin/purejaxppo train --preset cartpole --num-seeds 16 --out runs/demo "$@"
