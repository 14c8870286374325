#!/usr/bin/env bash
# The one command to try kvmesh: installs dependencies, builds, and serves the default model
# (CPU, one process; a small random GPT-2 it makes itself) on http://127.0.0.1:8000.
# Extra arguments go to kvmesh-serve, e.g. deploy/serve.sh --model /path/to/gpt2 --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/build.sh
exec ./build/coordinator/kvmesh-serve "$@"
