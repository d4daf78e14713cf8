#!/usr/bin/env bash
# Create .venv (if missing) and install purejaxppo with its test tools into it, at the
# versions the test suite last passed with (constraints.txt; pyproject.toml keeps ranges).
# Needs only Python >= 3.11 on the PATH (python3, or $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
