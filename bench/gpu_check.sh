#!/usr/bin/env bash
# gpu_check: on a GPU machine, builds kvmesh (Release, CUDA ON) into build-gpu, runs the gpu-labelled
# tests (each CUDA op against its CPU twin, the HF fixture end to end in bf16, TP/PP over NCCL when
# there are GPUs enough, decode graphs against eager steps), then the decode benchmark for the GPT-2
# XL shape (bf16, synthetic weights) at batch 1, 8, 32 and 128, with and without decode graphs,
# beside the weight-bytes roofline. Prints a short table last.
# Usage: bench/gpu_check.sh [build-dir]     Environment: KVMESH_BUILD_JOBS (default: all cores),
#        GPU_CHECK_NEW_TOKENS (decode tokens per sequence, default 64). Logs go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-gpu}"
logs="${OUT:-$build/gpu-check-logs}"
mkdir -p "$logs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$(date +%s)
stamp() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }

nvidia-smi -L || { echo "gpu_check: nvidia-smi finds no GPU" >&2; exit 1; }
stamp "configure + build ($build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVMESH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real \
  >"$logs/configure.log" 2>&1 || { tail -30 "$logs/configure.log"; exit 1; }
grep "kvmesh CUDA" "$logs/configure.log" || true
cmake --build "$build" -j"${KVMESH_BUILD_JOBS:-$(nproc)}" \
  --target cuda_ops_test cuda_hf_golden_test cuda_graphs_test nccl_parallel_test kvmesh-generate gpu_decode_bench \
  >"$logs/build.log" 2>&1 || { tail -40 "$logs/build.log"; exit 1; }

stamp "gpu tests"
tests_status=0
ctest --test-dir "$build" -L gpu --output-on-failure --timeout 300 >"$logs/gpu-tests.log" 2>&1 || tests_status=$?
tail -25 "$logs/gpu-tests.log"

stamp "decode benchmark"
bench_status=0
timeout 300 "$build/bench/gpu_decode_bench" synthetic:gpt2-xl "${GPU_CHECK_NEW_TOKENS:-64}" \
  >"$logs/decode-bench.txt" 2>"$logs/decode-bench.err" || bench_status=$?
tail -5 "$logs/decode-bench.err"

stamp "done: gpu tests exit $tests_status, benchmark exit $bench_status"
echo
grep -E "tests passed|tests failed" "$logs/gpu-tests.log" || true
cat "$logs/decode-bench.txt"
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
