#!/usr/bin/env bash
# gpu_check: on a GPU machine, runs the gpu tests (each CUDA op against its CPU twin, the matrix
# products with and without fused epilogues and the few-rows kernels, the HF fixture end to end in
# bf16, decode graphs against eager steps, TP/PP over NCCL when there are GPUs enough), then the
# decode products one by one (gpu_products_bench: the few-rows kernels, plain and overlapped, beside
# cuBLAS), then the decode benchmark for the GPT-2 XL shape (bf16, synthetic weights) at batch 1, 8,
# 32 and 128 (graphs, graphs with launches one after another, graphs with products through cuBLAS,
# graphs with the epilogues apart, eager, graphs with sampled tokens) beside the weight-bytes roofline, and the device time of each op per decode step
# (graphs and eager engines). Prints a short table last, also when a step fails or runs out of time.
# The programs come from gpu-bundle/ (or gpu-bundle.tar.gz, unpacked first) when it is there (made
# by bench/gpu_bundle.sh on a build machine: for GPU images without kvmesh's build dependencies),
# else they are built here (Release, CUDA ON, sm_90) into build-gpu.
# Time: the tests and the benchmarks share one deadline, GPU_CHECK_SECONDS (default 420) after the
# programs are ready; each step gets at most its own cap and what is left of the deadline.
# Usage: bench/gpu_check.sh [build-dir]     Environment: GPU_CHECK_BUILD=1 (build even with a
#        bundle), KVMESH_BUILD_JOBS (default: all cores), GPU_CHECK_NEW_TOKENS (decode tokens per
#        sequence, default 64), GPU_CHECK_SECONDS. Logs go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
build="${1:-build-gpu}"
logs="${OUT:-$root/$build-logs}"
mkdir -p "$logs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The gpu test programs: one per tests/gpu/*_test.cpp. Only nccl_parallel_test may skip on a
# machine with a GPU (its layouts need several); a skip anywhere else means no GPU was usable.
gpu_tests=()
for f in tests/gpu/*_test.cpp; do gpu_tests+=("$(basename "$f" .cpp)"); done
may_skip="nccl_parallel_test"
start=$(date +%s)
stamp() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }

# The table, printed on every exit: one row per test program run so far, then the benchmarks'.
summary=()
verdict="gpu check stopped before the tests"
print_table() {
  echo
  echo "$verdict"
  echo
  echo "| test program | ran | passed | failed | skipped | exit status |"
  echo "|---|---|---|---|---|---|"
  if [ "${#summary[@]}" -gt 0 ]; then printf '%s\n' "${summary[@]}"; fi
  echo
  if [ -s "$logs/products-bench.txt" ]; then cat "$logs/products-bench.txt"; else echo "(no products benchmark table)"; fi
  echo
  if [ -s "$logs/decode-bench.txt" ]; then cat "$logs/decode-bench.txt"; else echo "(no decode benchmark table)"; fi
}
trap print_table EXIT

nvidia-smi -L || { verdict="gpu check FAILED: nvidia-smi finds no GPU"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true

# Directories holding a CUDA library (the toolkit's, or the Python packages' nvidia/*/lib).
cuda_lib_dirs() {
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && echo "$d"
  done
  python3 - 2>/dev/null <<'PY' || true
import glob, os
try:
    import nvidia
    for base in nvidia.__path__:
        for lib in sorted(glob.glob(os.path.join(base, "*", "lib"))):
            print(lib)
except Exception:
    pass
PY
}

if [ ! -d gpu-bundle ] && [ -f gpu-bundle.tar.gz ] && [ -z "${GPU_CHECK_BUILD:-}" ]; then
  tar -xzf gpu-bundle.tar.gz || { verdict="gpu check FAILED: gpu-bundle.tar.gz does not unpack"; exit 1; }
fi
if [ -d gpu-bundle ] && [ -z "${GPU_CHECK_BUILD:-}" ]; then
  stamp "programs from gpu-bundle (commit $(cat gpu-bundle/commit 2>/dev/null || echo unknown))"
  head="$(git rev-parse HEAD 2>/dev/null || true)"
  if [ -n "$head" ] && [ "$head" != "$(cat gpu-bundle/commit 2>/dev/null)" ]; then
    echo "gpu_check: warning: the bundle was built from another commit than this tree's $head"
  fi
  tests_dir="$root/gpu-bundle/bin"
  bench_dir="$root/gpu-bundle/bin"
  # The programs read the test data and the tokenizer under the tree they were built from.
  src="$(cat gpu-bundle/source_root)"
  if [ "$src" != "$root" ]; then
    if [ -e "$src" ] && [ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ]; then
      verdict="gpu check FAILED: $src (the bundle's source tree) exists and is not this tree"
      exit 1
    fi
    mkdir -p "$(dirname "$src")"
    [ -e "$src" ] || ln -s "$root" "$src"
  fi
  libs="$root/gpu-bundle/lib"
  for d in $(cuda_lib_dirs); do libs="$libs:$d"; done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd "$tests_dir/cuda_ops_test" | grep "not found"; then
    verdict="gpu check FAILED: the bundle's programs miss the libraries above (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
    exit 1
  fi
else
  stamp "configure + build ($build)"
  if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVMESH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real \
      >"$logs/configure.log" 2>&1; then
    tail -30 "$logs/configure.log"
    verdict="gpu check FAILED: configure (log: $logs/configure.log)"
    exit 1
  fi
  grep "kvmesh CUDA" "$logs/configure.log" || true
  if ! cmake --build "$build" -j"${KVMESH_BUILD_JOBS:-$(nproc)}" --target "${gpu_tests[@]}" kvmesh-generate \
      gpu_decode_bench gpu_products_bench >"$logs/build.log" 2>&1; then
    tail -40 "$logs/build.log"
    verdict="gpu check FAILED: build (log: $logs/build.log)"
    exit 1
  fi
  tests_dir="$root/$build/tests"
  bench_dir="$root/$build/bench"
fi
# The multi-GPU test starts kvmesh-generate under mpirun: the one beside the test programs.
if [ -x "$tests_dir/kvmesh-generate" ]; then export KVMESH_GENERATE="$tests_dir/kvmesh-generate"; fi

deadline=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-420} ))
# Seconds a step may take: its cap, or what the deadline leaves after `reserve` seconds kept for
# the steps after it (at least 10).
budget() {
  local cap=$1 reserve=$2
  local left=$(( deadline - $(date +%s) - reserve ))
  if [ "$left" -lt 10 ]; then left=10; fi
  if [ "$left" -lt "$cap" ]; then echo "$left"; else echo "$cap"; fi
}
# A GoogleTest summary count: "[==========] N tests ... ran." (ran), "[  PASSED  ] N" (passed),
# "[  SKIPPED ] N" (skipped); 0 when absent (brief output prints no count of failures).
count() {
  local n
  case "$1" in
    ran) n="$(grep -E '^\[==========\] [0-9]+ tests? from .* ran' "$2" | head -1 | sed -E 's/^\[=+\] ([0-9]+).*/\1/')" ;;
    *) n="$(grep -E "^\[  $1 *\] [0-9]+ tests?[.,]" "$2" | head -1 | sed -E 's/^\[[^]]*\] ([0-9]+).*/\1/')" ;;
  esac
  echo "${n:-0}"
}

stamp "gpu tests"
rm -f "$logs/gpu-tests.log"
verdict="gpu check stopped during the tests"
tests_status=0
n_programs=${#gpu_tests[@]}
i=0
for t in "${gpu_tests[@]}"; do
  i=$((i + 1))
  # Keep time for the programs after this one (30 s each) and the benchmarks (60 + 200 s).
  limit=$(budget 150 $(( (n_programs - i) * 30 + 260 )))
  status=0
  timeout -k 10 "$limit" "$tests_dir/$t" --gtest_brief=1 >"$logs/$t.log" 2>&1 || status=$?
  ran=$(count ran "$logs/$t.log")
  passed=$(count PASSED "$logs/$t.log")
  skipped=$(count SKIPPED "$logs/$t.log")
  failed=$(( ran - passed - skipped ))
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then echo "gpu_check: $t ran past its ${limit}s"; fi
  if [ "$skipped" -gt 0 ] && [ "$t" != "$may_skip" ]; then
    echo "gpu_check: $t skipped tests on a machine with a GPU:"
    grep -m1 -A1 "Skipped" "$logs/$t.log" || true
    [ "$status" -eq 0 ] && status=3
  fi
  [ "$status" -eq 0 ] || tests_status=1
  grep -E "FAILED|Failure|error" "$logs/$t.log" | head -20 || true
  summary+=("| $t | $ran | $passed | $failed | $skipped | $status |")
  # One log for all the programs (few files to bring back from a GPU machine).
  { echo "===== $t (exit status $status)"; cat "$logs/$t.log"; } >>"$logs/gpu-tests.log"
  rm -f "$logs/$t.log"
done

stamp "products benchmark"
verdict="gpu check stopped during the products benchmark"
products_status=0
if [ -x "$bench_dir/gpu_products_bench" ]; then
  timeout -k 10 "$(budget 60 200)" "$bench_dir/gpu_products_bench" >"$logs/products-bench.txt" 2>&1 ||
    products_status=$?
else
  echo "gpu_check: no gpu_products_bench beside the other programs" >"$logs/products-bench.txt"
  products_status=1
fi

stamp "decode benchmark"
verdict="gpu check stopped during the decode benchmark"
bench_status=0
timeout -k 10 "$(budget 240 0)" "$bench_dir/gpu_decode_bench" synthetic:gpt2-xl "${GPU_CHECK_NEW_TOKENS:-64}" \
  >"$logs/decode-bench.txt" 2>"$logs/decode-bench.err" || bench_status=$?
tail -8 "$logs/decode-bench.err"

all_passed=$([ "$tests_status" -eq 0 ] && [ "$products_status" -eq 0 ] && [ "$bench_status" -eq 0 ] && echo 1 || echo 0)
verdict="gpu check $([ "$all_passed" -eq 1 ] && echo passed || echo FAILED):"
verdict+=" gpu tests $([ "$tests_status" -eq 0 ] && echo passed || echo FAILED), products benchmark exit $products_status,"
verdict+=" decode benchmark exit $bench_status,"
verdict+=" $(( $(date +%s) - start )) s"
stamp "done"
[ "$all_passed" -eq 1 ]
