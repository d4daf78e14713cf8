#!/usr/bin/env bash
# Install, then lint (ruff) and run the whole test suite (pytest).
#   bash scripts/test.sh            the full suite (what CI runs)
#   bash scripts/test.sh --quick    without the tests marked slow (learning, long CLI runs)
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
marker=()
if [ "${1:-}" = "--quick" ]; then
  shift
  marker=(-m "not slow")
fi
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# A persistent compilation cache for this run only: the many tests that compile the same
# program (in both workers and in their subprocesses) compile it once. Tests that set their
# own cache (--compilation-cache) still use theirs.
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
export JAX_COMPILATION_CACHE_DIR="$cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
# Two workers by default (the CI machine has 2 cores; most tests wait on XLA's compiler,
# which is single-threaded); PYTEST_WORKERS=0 runs in this process. loadgroup keeps the tests
# of one xdist_group (those sharing one trained run) on one worker.
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadgroup "${marker[@]}" "$@"
