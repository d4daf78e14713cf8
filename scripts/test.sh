#!/usr/bin/env bash
# Install, then lint (ruff) and run the whole test suite (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two workers by default (the CI machine has 2 cores; most tests wait on XLA's compiler,
# which is single-threaded); PYTEST_WORKERS=0 runs in this process.
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
