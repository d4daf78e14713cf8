#!/usr/bin/env bash
# Fetch, on this machine, the wheels that the lent GPU machine lacks (its image has jax, flax,
# optax, chex, orbax, matplotlib, seaborn and rich, but not gymnax) into .whl/, which git
# ignores through .git/info/exclude. benchmarks/run_device.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .whl \
    gymnax==1.0.1 'gymnasium>=1.1,<1.4' farama-notifications
ls .whl
