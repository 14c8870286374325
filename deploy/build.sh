#!/usr/bin/env bash
# Configures and builds kvmesh (Release) into ./build after installing its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install_deps.sh
jobs="${KVMESH_BUILD_JOBS:-$(nproc)}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$jobs"
