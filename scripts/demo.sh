#!/usr/bin/env bash
# Install, then train the cartpole preset with 16 seeds in one compiled call.
# Prints the summary table; writes runs/demo/{config.json,metrics.csv,summary.json,learning_curve.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/purejaxppo train --preset cartpole --num-seeds 16 --out runs/demo "$@"
