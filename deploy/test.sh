#!/usr/bin/env bash
# The one command to test kvmesh: installs dependencies, builds, and runs every test suite
# (labels unit, mpi, e2e; gpu tests run only where a GPU is present) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/build.sh
labels_excluded="gpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then labels_excluded=""; fi
ctest_args=(--test-dir build --output-on-failure --timeout 600 -j"${KVMESH_TEST_JOBS:-2}")
if [ -n "$labels_excluded" ]; then ctest_args+=(-LE "$labels_excluded"); fi
ctest "${ctest_args[@]}"
